"""The application: FastAPI with the webhook fast path in front, assembled from the routers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import Receive, Scope, Send

from campaigns.settings import get_settings
from worker.api.campaigns import celery_enqueue_import
from worker.api.campaigns import router as campaigns_router
from worker.api.deps import EnqueueImport
from worker.api.errors import install as install_error_handlers
from worker.api.events import router as events_router
from worker.api.guard import RequestGuard, refuse_demo_secrets
from worker.api.operations import MetricsExposition
from worker.api.operations import router as operations_router
from worker.api.recurring import router as recurring_router
from worker.api.schemas import REQUEST_MODELS
from worker.api.suppressions import router as suppressions_router
from worker.api.webhooks import WebhookFastPath, WebhookReceiver
from worker.api.webhooks import router as webhooks_router
from worker.runtime import Runtime, get_runtime
from worker.ui import install as install_console
from worker.ui.auth import signed_in_headers


class CampaignsAPI(FastAPI):
    """FastAPI, with the webhook receivers answered before its middleware stack (``WebhookFastPath``) and every
    other request checked before a byte of its body is read (``RequestGuard``: token, loopback, body cap)."""

    webhook_fast_path: WebhookFastPath | None = None
    guard: RequestGuard | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.webhook_fast_path
        if fast is not None and fast.handles(scope):
            await fast(scope, receive, send)
            return
        if self.guard is not None:
            await self.guard(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def unguarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI itself: what the guard passes a request on to."""
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema, plus the request bodies the domain validates itself (``schemas.common.RequestBody``)."""
        if self.openapi_schema is None:
            schema = get_openapi(
                title=self.title, version=self.version, description=self.description, routes=self.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in REQUEST_MODELS:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            _validation_errors_are_400(schema)
            self.openapi_schema = schema
        return self.openapi_schema


def _validation_errors_are_400(schema: dict[str, Any]) -> None:
    """FastAPI documents a 422 with its own body for every route with parameters; ``errors.install`` answers
    those as 400 in the Telnyx envelope, so say that instead (a 422 the route declares itself stays)."""
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for operations in schema["paths"].values():
        for operation in operations.values():
            answers = operation["responses"]
            fastapi_422 = answers.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if fastapi_422.get("$ref", "").endswith("/HTTPValidationError"):
                del answers["422"]
                answers.setdefault(
                    "400",
                    {"description": "Invalid request", "content": {"application/json": {"schema": envelope}}},
                )
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)


def create_app(runtime: Runtime | None = None, enqueue_import: EnqueueImport | None = None) -> CampaignsAPI:
    """The API; ``runtime`` defaults to the process-wide one (tests pass their own), ``enqueue_import`` to Celery.

    Raises ``InsecureConfiguration`` when a published demo secret is configured outside demo mode.
    """
    refuse_demo_secrets(runtime.settings if runtime is not None else get_settings())
    app = CampaignsAPI(
        title="campaigns",
        version="0.1.0",
        description="Telnyx-compatible scheduled events and more",
        # Operation ids are the route functions' names (create_scheduled_event, …): what a generated client calls.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.runtime = runtime
    app.state.enqueue_import = enqueue_import or celery_enqueue_import
    app.state.metrics = MetricsExposition()
    receiver = WebhookReceiver(lambda: runtime or get_runtime())
    app.state.webhooks = receiver
    app.webhook_fast_path = WebhookFastPath(receiver)
    app.guard = RequestGuard(
        app.unguarded,
        lambda: runtime.settings if runtime is not None else get_settings(),
        console_signed_in=lambda headers, settings: signed_in_headers(headers, settings.api_token),
    )
    install_error_handlers(app)
    for router in (
        webhooks_router,
        events_router,
        campaigns_router,
        suppressions_router,
        recurring_router,
        operations_router,
    ):
        app.include_router(router)
    install_console(app)  # the operator console at /ui
    return app
