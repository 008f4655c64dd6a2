"""The HTTP API: Telnyx-compatible scheduled events, webhook receivers, health and metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from campaigns import events as events_service
from campaigns import metrics as app_metrics
from campaigns import telephony, webhooks, windows
from campaigns.clock import utcnow_real
from campaigns.db import unit_of_work
from campaigns.errors import Conflict, FieldError, NotFound, ValidationFailed
from campaigns.group_commit import GroupCommit
from campaigns.models import IdempotencyKey
from campaigns.telephony.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, load_public_key, verify
from worker.api_campaigns import EnqueueImport, campaign_router, celery_enqueue_import
from worker.api_recurring import recurring_router
from worker.api_suppressions import suppression_router
from worker.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PAGE_SIZE = 250


def error_body(
    status: int, code: str, title: str, detail: str, pointer: str | None = None
) -> tuple[int, dict[str, Any]]:
    """An error in Telnyx's shape: ``{"errors": [{"code", "title", "detail", "source"?}]}``, with its status."""
    error: dict[str, Any] = {"code": code, "title": title, "detail": detail}
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    return status, {"errors": [error]}


def error_response(status: int, code: str, title: str, detail: str, pointer: str | None = None) -> JSONResponse:
    status, body = error_body(status, code, title, detail, pointer)
    return JSONResponse(body, status_code=status)


WEBHOOK_MAX_BODY = 1 << 20
"""Bytes: a Telnyx callback is a few KiB; a larger body is refused (413) before it is verified or stored."""


def too_large() -> tuple[int, dict[str, Any]]:
    return error_body(413, "10015", "Callback too large", f"the body is over {WEBHOOK_MAX_BODY} bytes")


ReceiveWebhook = Callable[[str, bytes, "str | None", "str | None", "str | None"], Awaitable[tuple[int, Any]]]
"""(path, body, signature, timestamp, attempt_id hint) → (status, JSON body)."""


class WebhookFastPath:
    """The webhook receivers as a bare ASGI endpoint, ahead of FastAPI's middleware, routing and request objects.

    Webhooks are by far the busiest requests (one per call progress step), and FastAPI's stack cost about as
    much API CPU per webhook as verifying its signature. The receiver itself (:func:`create_app`'s
    ``receive_webhook``) is the one the FastAPI routes call, so both answer the same; only POSTs to the exact
    paths come here, everything else goes through FastAPI.
    """

    def __init__(self, paths: frozenset[str], receive_webhook: ReceiveWebhook) -> None:
        self.paths = paths
        self._receive_webhook = receive_webhook

    def handles(self, scope: Scope) -> bool:
        return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        signature = timestamp = None
        declared = 0
        for name, value in scope["headers"]:
            if name == _SIGNATURE and signature is None:
                signature = value.decode("latin-1")
            elif name == _TIMESTAMP and timestamp is None:
                timestamp = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                declared = int(value)
        chunks: list[bytes] = []
        size = 0
        if declared <= WEBHOOK_MAX_BODY:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > WEBHOOK_MAX_BODY:
                    break
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        if declared > WEBHOOK_MAX_BODY or size > WEBHOOK_MAX_BODY:
            status, body = too_large()
        else:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            try:
                status, body = await self._receive_webhook(
                    scope["path"], b"".join(chunks), signature, timestamp, query.get("attempt_id")
                )
            except Exception:
                log.exception("webhook %s failed", scope["path"])
                status, body = error_body(500, "10007", "Unexpected error", "the callback was not applied")
        payload = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


_SIGNATURE = SIGNATURE_HEADER.lower().encode()
_TIMESTAMP = TIMESTAMP_HEADER.lower().encode()


class CampaignsAPI(FastAPI):
    """FastAPI, with the webhook receivers answered before its middleware stack (:class:`WebhookFastPath`)."""

    webhook_fast_path: WebhookFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.webhook_fast_path
        if fast is not None and fast.handles(scope):
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class Unauthorized(Exception):
    pass


_public_key = lru_cache(maxsize=4)(load_public_key)
"""The webhook key, decoded once per configured value rather than once per request."""


def create_app(runtime: Runtime | None = None, enqueue_import: EnqueueImport | None = None) -> CampaignsAPI:
    """The API; ``runtime`` defaults to the process-wide one (tests pass their own)."""
    app = CampaignsAPI(title="campaigns", version="0.1.0", description="Telnyx-compatible scheduled events and more")

    def rt() -> Runtime:
        return runtime or get_runtime()

    def in_uow(fn: Callable[[Session], T]) -> T:
        with unit_of_work(rt().sessions) as session:
            return fn(session)

    async def db(fn: Callable[[Session], T]) -> T:
        return await run_in_threadpool(in_uow, fn)

    def require_token(request: Request) -> None:
        token = rt().settings.api_token
        if not token:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthorized

    Auth = Depends(require_token)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, __: Unauthorized) -> JSONResponse:
        response = error_response(401, "10009", "Authentication failed", "a valid bearer token is required")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(ValidationFailed)
    async def _invalid(_: Request, exc: ValidationFailed) -> JSONResponse:
        return JSONResponse({"errors": [e.as_dict() for e in exc.errors]}, status_code=400)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        what = str(exc) if str(exc).startswith(("campaign", "recurring")) else f"scheduled event {exc}"
        return error_response(404, "10005", "Resource not found", f"no {what}")

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return error_response(409, "10013", "Conflict", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
            errors.append(FieldError("/" + "/".join(loc), str(err.get("msg", "is invalid"))).as_dict())
        return JSONResponse({"errors": errors}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.status_code), "Error", str(exc.detail))

    # --- webhooks -----------------------------------------------------------------------------------------
    # The busiest paths by far: answered by ``WebhookFastPath`` ahead of FastAPI; the routes below serve the schema.

    def verified(endpoint: str, raw: bytes, signature: str | None, timestamp: str | None) -> tuple[int, Any] | None:
        """``None`` when ``raw`` is signed by the configured key; else the answer (401) to send instead."""
        key_b64 = rt().settings.telnyx_public_key
        if not key_b64:
            app_metrics.WEBHOOKS_RECEIVED.labels(endpoint, "no_public_key").inc()
            log.error("webhook rejected: CAMPAIGNS_TELNYX_PUBLIC_KEY is not set")
            return error_body(401, "10009", "Signature verification failed", "no public key configured")
        try:
            verify(
                _public_key(key_b64),
                signature=signature,
                timestamp=timestamp,
                body=raw,
                real_now=utcnow_real(),
                tolerance_secs=rt().settings.webhook_tolerance_secs,
            )
        except SignatureError as exc:
            app_metrics.WEBHOOKS_RECEIVED.labels(endpoint, "invalid_signature").inc()
            log.warning("webhook rejected: %s", exc)
            return error_body(401, "10009", "Signature verification failed", str(exc))
        app_metrics.WEBHOOKS_RECEIVED.labels(endpoint, "valid").inc()
        return None

    # Callbacks arriving together share one transaction and one commit; each is answered after that commit.
    # Two committers: a batch now costs a few set-based statements whatever its size, so fewer, larger batches
    # take less of the GIL per callback than four small ones (measured: 4 threads ~1.4 ms of API CPU per
    # webhook, 2 ~1.0 ms, 1 ~0.8 ms); the second keeps one slow batch from holding up every caller.
    callbacks: GroupCommit[webhooks.Received, str] = GroupCommit(
        lambda: rt().sessions, webhooks.record_and_apply_many, threads=2, name="webhooks"
    )
    app.state.webhook_commits = callbacks

    def parse_texml(raw: bytes, attempt_hint: str | None) -> telephony.Callback:
        form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
        return telephony.parse_texml_status(form, attempt_hint)

    def parse_json(raw: bytes, attempt_hint: str | None) -> telephony.Callback:
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise telephony.WebhookRejected("body must be a JSON object")
            return telephony.parse_json_event(body, attempt_hint)
        except ValueError as exc:
            raise telephony.WebhookRejected(str(exc)) from None

    receivers: dict[str, tuple[str, Callable[[bytes, str | None], telephony.Callback]]] = {
        "/webhooks/telnyx/call-status": ("call_status", parse_texml),
        "/webhooks/telnyx": ("telnyx", parse_json),
    }

    async def receive_webhook(
        path: str, raw: bytes, signature: str | None, timestamp: str | None, attempt_hint: str | None
    ) -> tuple[int, Any]:
        """Verify, parse, apply (after the commit that stores it): the answer to one webhook, as status and body."""
        endpoint, parse = receivers[path]
        if len(raw) > WEBHOOK_MAX_BODY:
            return too_large()
        rejected = verified(endpoint, raw, signature, timestamp)
        if rejected is not None:
            return rejected
        try:
            callback = parse(raw, attempt_hint)
        except telephony.WebhookRejected as exc:
            return error_body(400, "10015", "Invalid callback", str(exc))
        now = rt().clock.now()
        result = await asyncio.wrap_future(callbacks.submit(webhooks.Received(callback, raw, now)))
        app_metrics.count_webhook(callback.kind, result)
        return 200, {"result": result}

    app.webhook_fast_path = WebhookFastPath(frozenset(receivers), receive_webhook)

    async def webhook_route(path: str, request: Request) -> JSONResponse:
        """The same receiver through FastAPI (for the schema, and any request the fast path does not see)."""
        status, body = await receive_webhook(
            path,
            await request.body(),
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER),
            request.query_params.get("attempt_id"),
        )
        return JSONResponse(body, status_code=status)

    @app.post("/webhooks/telnyx/call-status")
    async def texml_call_status(request: Request) -> JSONResponse:
        return await webhook_route("/webhooks/telnyx/call-status", request)

    @app.post("/webhooks/telnyx")
    async def telnyx_json_webhook(request: Request) -> JSONResponse:
        return await webhook_route("/webhooks/telnyx", request)

    # --- scheduled events -------------------------------------------------------------------------------

    base = "/v2/ai/assistants/{assistant_id}/scheduled_events"

    @app.post(base, status_code=201, dependencies=[Auth])
    async def create_scheduled_event(assistant_id: str, request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ValidationFailed([FieldError("", "request body is not valid JSON")]) from None
        if len(assistant_id) > events_service.MAX_STRING or "\x00" in assistant_id:
            detail = f"must be at most {events_service.MAX_STRING} characters, without NUL characters"
            raise ValidationFailed([FieldError("/assistant_id", detail)])
        now = rt().clock.now()
        key = request.headers.get("idempotency-key")

        def validated() -> events_service.NewEvent:
            return events_service.validate_create(
                body,
                now=now,
                default_ruleset=rt().settings.default_ruleset,
                known_rulesets=frozenset(windows.rulesets()),
            )

        if not key:
            new = validated()
            created = await db(
                lambda s: events_service.serialize_event(events_service.create_event(s, assistant_id, new, now=now))
            )
            return JSONResponse(created, status_code=201)
        if len(key) > 255:
            raise ValidationFailed([FieldError("/Idempotency-Key", "must be at most 255 characters")])
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

        def create_once(s: Session) -> tuple[int, dict[str, Any]]:
            inserted = s.execute(
                insert(IdempotencyKey)
                .values(
                    scope=assistant_id,
                    key=key,
                    request_hash=digest,
                    response_status=0,
                    response_body={},
                    created_at=now,
                )
                .on_conflict_do_nothing()
                .returning(IdempotencyKey.key)
            ).scalar_one_or_none()
            if inserted is None:
                stored = s.scalars(
                    select(IdempotencyKey).where(IdempotencyKey.scope == assistant_id, IdempotencyKey.key == key)
                ).one()
                if stored.request_hash != digest:
                    return 422, {}
                return stored.response_status, stored.response_body
            # Validated only once the key is known to be new (an invalid body rolls the key back): validation
            # depends on the time (``scheduled_at_fixed_datetime`` must be in the future), and a retry arriving
            # after that moment must still get the 201 of the event it created, not a 400 that invites creating
            # it a second time.
            result = events_service.serialize_event(events_service.create_event(s, assistant_id, validated(), now=now))
            s.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.scope == assistant_id, IdempotencyKey.key == key)
                .values(response_status=201, response_body=result)
            )
            return 201, result

        status, payload = await db(create_once)
        if status == 422:
            return error_response(
                422,
                "10015",
                "Idempotency key reused",
                "this Idempotency-Key was used with a different request body",
                "/Idempotency-Key",
            )
        return JSONResponse(payload, status_code=status)

    @app.get(base, dependencies=[Auth])
    async def list_scheduled_events(
        assistant_id: str,
        page_number: Annotated[int, Query(alias="page[number]", ge=1, le=events_service.MAX_PAGE_NUMBER)] = 1,
        page_size: Annotated[int, Query(alias="page[size]", ge=1, le=MAX_PAGE_SIZE)] = 20,
        from_date: str | None = None,
        to_date: str | None = None,
        conversation_channel: str | None = None,
        status: str | None = None,
        campaign_id: uuid.UUID | None = None,
        end_user_target: str | None = None,
    ) -> dict[str, Any]:
        problems: list[FieldError] = []
        parsed: dict[str, Any] = {}
        for name, value in (("from_date", from_date), ("to_date", to_date)):
            if value is not None:
                parsed[name] = events_service.parse_datetime(value)
                if parsed[name] is None:
                    problems.append(FieldError(f"/{name}", "must be an ISO 8601 date-time"))
        if conversation_channel is not None and conversation_channel not in events_service.CHANNELS:
            problems.append(FieldError("/conversation_channel", "must be one of phone_call, sms_chat"))
        if status is not None and status not in ("pending", "in_progress", "completed", "failed", "canceled"):
            problems.append(FieldError("/status", "must be one of pending, in_progress, completed, failed, canceled"))
        if problems:
            raise ValidationFailed(problems)
        filters = events_service.EventFilter(
            assistant_id=assistant_id,
            from_date=parsed.get("from_date"),
            to_date=parsed.get("to_date"),
            channel=conversation_channel,
            status=status,
            campaign_id=campaign_id,
            end_user_target=end_user_target,
        )

        def page(s: Session) -> dict[str, Any]:
            rows, total = events_service.list_events(s, filters, page_number=page_number, page_size=page_size)
            return events_service.page_envelope(
                [events_service.serialize_event(e) for e in rows], total, page_number, page_size
            )

        return await db(page)

    @app.get(base + "/{event_id}", dependencies=[Auth])
    async def retrieve_scheduled_event(assistant_id: str, event_id: str) -> dict[str, Any]:
        return await db(lambda s: events_service.serialize_event(events_service.get_event(s, assistant_id, event_id)))

    @app.delete(base + "/{event_id}", status_code=204, dependencies=[Auth])
    async def delete_scheduled_event(assistant_id: str, event_id: str) -> Response:
        now = rt().clock.now()

        def cancel(s: Session) -> None:
            event = events_service.get_event(s, assistant_id, event_id, for_update=True)
            events_service.cancel_event(s, event, now=now)

        await db(cancel)
        return Response(status_code=204)

    app.include_router(campaign_router(rt, db, Auth, enqueue_import or celery_enqueue_import))
    app.include_router(suppression_router(rt, db, Auth))
    app.include_router(recurring_router(rt, db, Auth))

    # --- operations ---------------------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "time": rt().clock.now().isoformat()}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}

        def ping_db() -> None:
            with rt().sessions() as s:
                s.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(ping_db)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        try:
            import redis

            url = rt().settings.redis_url or "redis://127.0.0.1:6379/0"
            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
            await run_in_threadpool(client.ping)
            client.close()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unreachable: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", **checks}, status_code=200 if ok else 503)

    registries: list[CollectorRegistry] = []

    def exposition() -> bytes:
        if not registries:  # built on first use: the runtime may not exist when the app is created
            collector = app_metrics.DatabaseCollector(rt().sessions, rt().clock.now)
            registries.append(app_metrics.api_registry(collector))
        return generate_latest(registries[0])

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        """This process's metrics (every process's, in multiprocess mode) and the database gauges."""
        return PlainTextResponse((await run_in_threadpool(exposition)).decode(), media_type=CONTENT_TYPE_LATEST)

    return app
