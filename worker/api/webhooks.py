"""The Telnyx webhook receivers: a bare ASGI fast path ahead of FastAPI, and the same receiver as FastAPI routes.

Webhooks are by far the busiest requests (one per call progress step), and FastAPI's stack cost about as much API
CPU per webhook as verifying its signature (docs/benchmarks.md, "a bare ASGI fast path"): ``CampaignsAPI`` sends
POSTs to the exact webhook paths to ``WebhookFastPath`` before its middleware, routing and request objects. Both
ways end in ``WebhookReceiver.receive``, so both answer the same; the FastAPI routes serve the schema and any
request the fast path does not see.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from campaigns import metrics as app_metrics
from campaigns import telephony, webhooks
from campaigns.clock import utcnow_real
from campaigns.group_commit import GroupCommit
from campaigns.lifecycle.holds import RateBackoff
from campaigns.telephony.hints import hint_key
from campaigns.telephony.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, load_public_key, verify
from worker.api.errors import AUTH_CODE, INVALID_CODE, error_body, responses
from worker.api.schemas.operations import WebhookResult
from worker.runtime import Runtime

log = logging.getLogger(__name__)

CALL_STATUS_PATH: Final = "/webhooks/telnyx/call-status"
JSON_PATH: Final = "/webhooks/telnyx"
WEBHOOK_MAX_BODY: Final = 1 << 20
"""Bytes: a Telnyx callback is a few KiB; a larger body is refused (413) before it is verified or stored."""


def too_large() -> tuple[int, dict[str, Any]]:
    return error_body(413, INVALID_CODE, "Callback too large", f"the body is over {WEBHOOK_MAX_BODY} bytes")


_public_key = lru_cache(maxsize=4)(load_public_key)
"""The webhook key, decoded once per configured value rather than once per request."""


def _parse_texml(raw: bytes, attempt_hint: str | None, hint_key: bytes) -> telephony.Callback:
    form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    return telephony.parse_texml_status(form, attempt_hint, hint_key)


def _parse_json(raw: bytes, attempt_hint: str | None, hint_key: bytes) -> telephony.Callback:
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise telephony.WebhookRejected("body must be a JSON object")
        return telephony.parse_json_event(body, attempt_hint, hint_key)
    except ValueError as exc:
        raise telephony.WebhookRejected(str(exc)) from None
    except RecursionError:
        raise telephony.WebhookRejected("body is nested too deeply") from None


RECEIVERS: Final[dict[str, tuple[str, Callable[[bytes, str | None, bytes], telephony.Callback]]]] = {
    CALL_STATUS_PATH: ("call_status", _parse_texml),
    JSON_PATH: ("telnyx", _parse_json),
}
"""Path → (metric label, parser)."""


class WebhookReceiver:
    """Verify, parse, apply (after the commit that stores it): the answer to one webhook, as status and body."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime
        # Callbacks arriving together share one transaction and one commit; each is answered after that commit.
        # Two committers: a batch now costs a few set-based statements whatever its size, so fewer, larger
        # batches take less of the GIL per callback than four small ones (measured: 4 threads ~1.4 ms of API CPU
        # per webhook, 2 ~1.0 ms, 1 ~0.8 ms); the second keeps one slow batch from holding up every caller.
        self.commits: GroupCommit[webhooks.Received, str] = GroupCommit(
            lambda: runtime().sessions, self._apply_many, threads=2, name="webhooks"
        )

    def _apply_many(self, session: Session, items: Sequence[webhooks.Received]) -> list[str]:
        rt = self._runtime()
        backoff = RateBackoff.for_calls(rt.settings, rt.clock)
        return webhooks.record_and_apply_many(session, items, backoff=backoff)

    def _verified(
        self, endpoint: str, raw: bytes, signature: str | None, timestamp: str | None
    ) -> tuple[int, Any] | None:
        """``None`` when ``raw`` is signed by the configured key; else the answer (401) to send instead."""
        settings = self._runtime().settings
        key_b64 = settings.telnyx_public_key
        if not key_b64:
            app_metrics.WEBHOOKS_RECEIVED.labels(endpoint, "no_public_key").inc()
            log.error("webhook rejected: CAMPAIGNS_TELNYX_PUBLIC_KEY is not set")
            return error_body(401, AUTH_CODE, "Signature verification failed", "no public key configured")
        try:
            verify(
                _public_key(key_b64),
                signature=signature,
                timestamp=timestamp,
                body=raw,
                real_now=utcnow_real(),
                tolerance_secs=settings.webhook_tolerance_secs,
            )
        except SignatureError as exc:
            app_metrics.WEBHOOKS_RECEIVED.labels(endpoint, "invalid_signature").inc()
            log.warning("webhook rejected: %s", exc)
            return error_body(401, AUTH_CODE, "Signature verification failed", str(exc))
        app_metrics.WEBHOOKS_RECEIVED.labels(endpoint, "valid").inc()
        return None

    async def receive(
        self, path: str, raw: bytes, signature: str | None, timestamp: str | None, attempt_hint: str | None
    ) -> tuple[int, Any]:
        endpoint, parse = RECEIVERS[path]
        if len(raw) > WEBHOOK_MAX_BODY:
            return too_large()
        rejected = self._verified(endpoint, raw, signature, timestamp)
        if rejected is not None:
            return rejected
        try:
            callback = parse(raw, attempt_hint, hint_key(self._runtime().settings))
        except telephony.WebhookRejected as exc:
            return error_body(400, INVALID_CODE, "Invalid callback", str(exc))
        now = self._runtime().clock.now()
        result = await asyncio.wrap_future(self.commits.submit(webhooks.Received(callback, raw, now)))
        app_metrics.count_webhook(callback.kind, result)
        return 200, {"result": result}


_SIGNATURE = SIGNATURE_HEADER.lower().encode()
_TIMESTAMP = TIMESTAMP_HEADER.lower().encode()


class WebhookFastPath:
    """The webhook receivers as a bare ASGI endpoint, ahead of FastAPI's middleware, routing and request objects.

    Only POSTs to the exact paths come here, everything else goes through FastAPI.
    """

    def __init__(self, receiver: WebhookReceiver, paths: frozenset[str] = frozenset(RECEIVERS)) -> None:
        self.paths = paths
        self._receive_webhook = receiver.receive

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


# --- the same receivers through FastAPI (schema, and requests the fast path does not see) ---------------------

router = APIRouter(tags=["webhooks"])

_SIGNED: Final = [
    {"name": SIGNATURE_HEADER, "in": "header", "required": True, "schema": {"type": "string"},
     "description": "Base64 Ed25519 signature of f'{timestamp}|{body}'"},
    {"name": TIMESTAMP_HEADER, "in": "header", "required": True, "schema": {"type": "string"},
     "description": "Unix time the callback was signed at"},
    {"name": "attempt_id", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "The attempt, as put in the callback URL at dispatch: '<attempt id>.<MAC>' (a bare id, from "
                    "URLs made before the MAC, applies only where the call or message id agrees)"},
]  # fmt: skip
_ANSWERS: Final = responses(
    400, 401, 413, 500, success={200: {"model": WebhookResult, "description": "Applied (or seen before)"}}
)


async def _through_fastapi(path: str, request: Request) -> JSONResponse:
    receiver: WebhookReceiver = request.app.state.webhooks
    status, body = await receiver.receive(
        path,
        await request.body(),
        request.headers.get(SIGNATURE_HEADER),
        request.headers.get(TIMESTAMP_HEADER),
        request.query_params.get("attempt_id"),
    )
    return JSONResponse(body, status_code=status)


@router.post(
    CALL_STATUS_PATH,
    response_model=WebhookResult,
    responses=_ANSWERS,
    openapi_extra={
        "parameters": _SIGNED,
        "requestBody": {
            "required": True,
            "description": "A TeXML status callback, signed",
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
                name: {"type": "string"} for name in ("CallSid", "CallStatus", "SequenceNumber", "CallDuration")
            }}}},
        },
    },
)  # fmt: skip
async def texml_call_status(request: Request) -> JSONResponse:
    """TeXML call status callbacks (``StatusCallback``), form-encoded."""
    return await _through_fastapi(CALL_STATUS_PATH, request)


@router.post(
    JSON_PATH,
    response_model=WebhookResult,
    responses=_ANSWERS,
    openapi_extra={
        "parameters": _SIGNED,
        "requestBody": {
            "required": True,
            "description": "A Telnyx webhook (messaging or Call Control): {data: {event_type, id, payload}}, signed",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    },
)
async def telnyx_json_webhook(request: Request) -> JSONResponse:
    """Messaging and Call Control webhooks, JSON."""
    return await _through_fastapi(JSON_PATH, request)
