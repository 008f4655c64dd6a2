"""A fake Telnyx HTTP server. This is a TEST DOUBLE, not Telnyx: tests, the demo and benchmarks use it.

It implements the small part of the Telnyx API the worker calls (``/v2/texml/ai_calls/{connection_id}``,
``/v2/calls``, ``/v2/messages``), decides each call's or message's outcome from a script or a random mix, and
posts **signed** status callbacks and webhooks back, so the real provider adapters and the webhook path run
end to end. It keeps everything in memory and answers any non-empty bearer token.

Control endpoints (no auth): ``POST /_simulator/script``, ``GET /_simulator/calls``,
``GET /_simulator/messages``, ``GET /_simulator/public-key``, ``POST /_simulator/reset``, ``GET /healthz``,
``POST /_simulator/inbound`` (a recipient texts back: signed ``message.received``) and ``POST /_simulator/block``.

Opt-outs work like Telnyx's default messaging profile: an inbound STOP, STOPALL, STOP ALL, UNSUBSCRIBE, CANCEL,
END or QUIT creates a block rule for the sender (START or UNSTOP lifts it), and a message to a blocked number is
refused with error ``40300`` "Blocked due to STOP message". ``/_simulator/block`` creates a rule without a webhook.

Outcomes:

- calls: ``completed``, ``busy``, ``no-answer``, ``failed``, ``canceled``;
- messages: ``delivered``, ``delivery_failed``, ``sending_failed``;
- provider errors (both): ``http_429`` (429, nothing placed), ``http_500`` (503, nothing placed), ``http_422``
  (422 "Invalid destination", nothing placed) and ``timeout`` (placed and completed/delivered, but the HTTP
  answer is held for ``response_delay_on_timeout`` seconds so the client times out).

A call outcome given to a message, or the reverse, is translated: ``completed`` means delivered, ``busy`` and
``no-answer`` mean ``delivery_failed``, ``failed`` and ``canceled`` mean ``sending_failed``;
``delivered`` means ``completed`` and the two message failures mean ``failed``.

Concurrency: the server runs on one asyncio event loop. Every read-modify-write of the shared state (dedupe
tables, script queues, logs) happens in plain synchronous methods with no ``await`` inside, so no other
coroutine can interleave with it. Callbacks for one call are sent sequentially by one task per call.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import math
import os
import random
import re
import secrets
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from campaigns.telephony import tls_context
from campaigns.telephony.signatures import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    private_key_from_b64,
    public_key_b64,
    sign,
)

log = logging.getLogger(__name__)

PRIVATE_KEY_ENV = "CAMPAIGNS_SIMULATOR_PRIVATE_KEY"

CALL_OUTCOMES = ("completed", "busy", "no-answer", "failed", "canceled")
MESSAGE_OUTCOMES = ("delivered", "delivery_failed", "sending_failed")
ERROR_OUTCOMES = ("http_429", "http_500", "http_422", "timeout")
OUTCOMES = frozenset(CALL_OUTCOMES + MESSAGE_OUTCOMES + ERROR_OUTCOMES)

# Terminal call status -> (hangup cause, hangup source), shared by TeXML callbacks and Call Control webhooks.
_HANGUP: dict[str, tuple[str, str]] = {
    "completed": ("normal_clearing", "callee"),
    "busy": ("user_busy", "callee"),
    "no-answer": ("timeout", "unknown"),
    "failed": ("call_rejected", "unknown"),
    "canceled": ("originator_cancel", "caller"),
}
_MESSAGE_ERRORS: dict[str, dict[str, str]] = {
    "delivery_failed": {"code": "40008", "title": "Undeliverable", "detail": "Simulated delivery failure."},
    "sending_failed": {"code": "40001", "title": "Not routable", "detail": "Simulated sending failure."},
}
_OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
_OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_:-]{1,255}$")
# Telnyx wants a webhook answered within 2 s; be more forgiving so a loaded benchmark box is not punished.
_CALLBACK_TIMEOUT = httpx.Timeout(5.0, pool=None)
# Callbacks in flight at once, each on its own single-connection client (a "lane"). httpcore scans every pooled
# connection (and polls its socket) for every request, and every queued request on each change, so one shared
# pool costs O(connections) or worse per callback: 79% of the simulator's CPU with a deep queue, and still its
# bottleneck at 64 connections. Callbacks beyond this many wait for a free lane.
_CALLBACK_CONCURRENCY = 32
_LANE_LIMITS = httpx.Limits(max_connections=1, max_keepalive_connections=1)
_RETRY_BACKOFF_SECS = 0.2


@dataclass
class SimulatorConfig:
    """Knobs of the simulator. Delays are real seconds; reported durations are simulated seconds."""

    ring_delay: float = 0.2
    """Real seconds between ``initiated``/``ringing`` and the outcome."""
    talk_delay: float = 0.5
    """Real seconds an answered call lasts before its ``completed`` callback."""
    call_duration_secs: int = 42
    """``CallDuration`` / ``call_duration`` reported for a completed call."""
    mix: dict[str, float] | None = None
    """Random outcome weights for destinations without a scripted outcome (no script default either)."""
    seed: int | None = None
    """Seeds the outcome draws from ``mix`` only; ids are always random so runs never reuse them."""
    private_key_b64: str | None = None
    """Base64 32-byte Ed25519 seed; ``None`` reads ``CAMPAIGNS_SIMULATOR_PRIVATE_KEY``, else one is generated."""
    response_delay_on_timeout: float = 30.0
    """Real seconds the HTTP answer is held back for the ``timeout`` outcome."""
    webhook_retries: int = 3
    """Delivery tries per callback (like Telnyx's "up to 3 times per URL"), on connection errors or non-2xx."""
    callbacks: bool = True
    """Send status callbacks and webhooks at all; off for load tests that measure dispatch alone."""


def parse_mix(text: str) -> dict[str, float]:
    """Parse ``"completed=0.6,busy=0.2,no-answer=0.2"`` into outcome weights.

    Raises ``ValueError`` naming the offending part: a malformed item, a bad weight, an unknown or repeated
    outcome, or weights that are all zero.
    """
    if not text.strip():
        raise ValueError("mix is empty: expected e.g. 'completed=0.6,busy=0.2,no-answer=0.2'")
    weights: dict[str, float] = {}
    for number, item in enumerate(text.split(","), start=1):
        name, sep, raw_weight = item.strip().partition("=")
        name, raw_weight = name.strip(), raw_weight.strip()
        if not sep or not name or not raw_weight:
            raise ValueError(f"mix item {number} {item.strip()!r} is not of the form outcome=weight")
        try:
            weight = float(raw_weight)
        except ValueError:
            raise ValueError(f"mix item {item.strip()!r}: weight {raw_weight!r} is not a number") from None
        if name in weights:
            raise ValueError(f"mix item {item.strip()!r}: outcome {name!r} appears twice")
        weights[name] = weight
    return _validate_mix(weights)


def _validate_mix(weights: Mapping[str, object]) -> dict[str, float]:
    """Check outcome names and weights; return a plain ``dict[str, float]``."""
    if not weights:
        raise ValueError("mix is empty")
    checked: dict[str, float] = {}
    for name, weight in weights.items():
        if name not in OUTCOMES:
            raise ValueError(f"mix: unknown outcome {name!r} (valid: {', '.join(sorted(OUTCOMES))})")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"mix: weight of {name!r} is not a number: {weight!r}")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"mix: weight of {name!r} must be a finite number >= 0, got {weight!r}")
        checked[name] = float(weight)
    if sum(checked.values()) <= 0:
        raise ValueError("mix: the weights must not all be zero")
    return checked


def _load_private_key(seed_b64: str | None) -> Ed25519PrivateKey:
    """The signing key: the configured seed, else the environment's, else a fresh one."""
    source = "private_key_b64"
    if seed_b64 is None:
        seed_b64, source = os.environ.get(PRIVATE_KEY_ENV) or None, PRIVATE_KEY_ENV
    if seed_b64 is None:
        return Ed25519PrivateKey.generate()
    try:
        return private_key_from_b64(seed_b64)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{source} is not a base64 32-byte Ed25519 seed") from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _provider_id() -> str:
    return "v3:" + secrets.token_urlsafe(24)


def _call_status(outcome: str) -> str:
    """The call status an outcome produces (``timeout`` still completes the call)."""
    if outcome in CALL_OUTCOMES:
        return outcome
    if outcome in ("delivery_failed", "sending_failed"):
        return "failed"
    return "completed"


def _message_status(outcome: str) -> str:
    """The final ``to[0].status`` an outcome produces (``timeout`` still delivers the message)."""
    if outcome in MESSAGE_OUTCOMES:
        return outcome
    if outcome in ("busy", "no-answer"):
        return "delivery_failed"
    if outcome in ("failed", "canceled"):
        return "sending_failed"
    return "delivered"


def _attempt_id(url: str | None) -> str | None:
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("attempt_id")
    return values[0] if values else None


def _json_dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class _ApiError(Exception):
    """An error answered with the Telnyx error envelope."""

    def __init__(self, status_code: int, error: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(error.get("detail") or error.get("title"))
        self.status_code = status_code
        self.error = error
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse({"errors": [self.error]}, status_code=self.status_code, headers=self.headers)


def _invalid(detail: str, pointer: str, status_code: int = 422) -> _ApiError:
    return _ApiError(
        status_code,
        {"code": "10015", "title": "Invalid parameter", "detail": detail, "source": {"pointer": pointer}},
    )


def _authorize(request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _ApiError(
            401,
            {
                "code": "10009",
                "title": "Authentication failed",
                "detail": "An 'Authorization: Bearer <API key>' header is required.",
            },
        )


def _json_object(raw: bytes, status_code: int = 422) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.", "/", status_code)
    return body


def _required_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"'{key}' is required and must be a non-empty string.", f"/{key}")
    return value


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"'{key}' must be a string.", f"/{key}")
    return value


def _optional_url(body: Mapping[str, Any], key: str) -> str | None:
    value = _optional_str(body, key)
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _invalid(f"'{key}' must be an absolute http(s) URL.", f"/{key}")
    return value


def _injected_error(outcome: str, pointer: str, *, dial: bool) -> _ApiError | None:
    """The provider error an error-injection outcome stands for, if it is one."""
    if outcome == "http_429":
        title = "Too many dials per second" if dial else "Too many requests"
        return _ApiError(429, {"code": "90103" if dial else "10011", "title": title})
    if outcome == "http_500":
        return _ApiError(503, {"code": "10007", "title": "Unexpected error", "detail": "Simulated provider failure."})
    if outcome == "http_422":
        return _ApiError(
            422,
            {
                "code": "10016",
                "title": "Invalid destination",
                "detail": "Simulated invalid destination.",
                "source": {"pointer": pointer},
            },
        )
    return None


@dataclass
class _Script:
    targets: dict[str, deque[str]] = field(default_factory=dict)
    default: str | None = None
    mix: dict[str, float] | None = None


@dataclass
class _Accepted:
    """A placed call or message, kept so a repeated command_id / Idempotency-Key gets the same answer."""

    body: dict[str, Any]
    outcome: str
    provider_id: str


@dataclass
class _Call:
    call_control_id: str
    call_leg_id: str
    call_session_id: str
    connection_id: str
    from_: str
    to: str
    started_at: datetime
    is_alive: bool = True
    call_duration: int | None = None


class _Simulator:
    """All in-memory state of one simulator app, plus the background callback machinery."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.config_mix = _validate_mix(config.mix) if config.mix is not None else None
        self.key = _load_private_key(config.private_key_b64)
        self.public_key = public_key_b64(self.key)
        self.rng = random.Random(config.seed)
        self.account_sid = str(uuid.uuid4())
        self.calls_log: list[dict[str, Any]] = []
        self.messages_log: list[dict[str, Any]] = []
        self.script = _Script()
        self.dials_by_command_id: dict[str, _Accepted] = {}
        self.messages_by_key: dict[str, _Accepted] = {}
        self.calls: dict[str, _Call] = {}
        self.blocked: set[str] = set()
        """Numbers that opted out of messages (Telnyx block rules)."""
        self.tasks: set[asyncio.Task[None]] = set()
        self._lanes: asyncio.Queue[httpx.AsyncClient] | None = None
        self._clients: list[httpx.AsyncClient] = []

    # -- state (synchronous on purpose: see the module docstring) --------------------------------------

    def record(self, kind_log: list[dict[str, Any]], request: Request, raw: bytes) -> dict[str, Any]:
        """Append a log entry for a received request; handlers fill in the outcome later."""
        try:
            parsed: Any = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = raw.decode(errors="replace")
        body = parsed if isinstance(parsed, dict) else {}

        def text(*keys: str) -> str | None:
            for key in keys:
                if isinstance(body.get(key), str):
                    return str(body[key])
            return None

        entry: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "received_at": _iso(_now()),
            "path": request.url.path,
            "to": text("To", "to"),
            "from": text("From", "from"),
            "body": parsed,
            "headers": {"idempotency-key": request.headers.get("idempotency-key")},
            "command_id": text("command_id"),
            "attempt_id": _attempt_id(text("StatusCallback", "webhook_url")),
            "outcome": None,
            "duplicate": False,
            "provider_id": None,
            "status_code": None,
        }
        kind_log.append(entry)
        return entry

    def next_outcome(self, to: str) -> str:
        """Pop the destination's next scripted outcome, else the script default, else the mix."""
        queue = self.script.targets.get(to)
        if queue:
            return queue.popleft()
        if self.script.default is not None:
            return self.script.default
        mix = self.script.mix or self.config_mix
        if mix:
            names = list(mix)
            return self.rng.choices(names, weights=[mix[name] for name in names])[0]
        return "completed"

    def new_call(self, connection_id: str, from_: str, to: str) -> _Call:
        call = _Call(
            call_control_id=_provider_id(),
            call_leg_id=str(uuid.uuid4()),
            call_session_id=str(uuid.uuid4()),
            connection_id=connection_id,
            from_=from_,
            to=to,
            started_at=_now(),
        )
        self.calls[call.call_control_id] = call
        return call

    def hang_up(self, call: _Call, status: str) -> None:
        call.is_alive = False
        call.call_duration = self.config.call_duration_secs if status == "completed" else 0

    def reset(self) -> None:
        """Forget logs, script, dedupe tables and calls; stop every pending callback."""
        for task in self.tasks:
            task.cancel()
        self.calls_log.clear()
        self.messages_log.clear()
        self.script = _Script()
        self.dials_by_command_id.clear()
        self.messages_by_key.clear()
        self.calls.clear()
        self.blocked.clear()

    # -- background work ---------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``coro`` in the background, keeping a reference so it is not garbage-collected."""
        task = asyncio.get_running_loop().create_task(self._guarded(coro, what))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        # A task cancelled before its first step never awaits ``coro``; closing it avoids the warning.
        task.add_done_callback(lambda _task: coro.close())

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await coro
        except Exception:
            log.exception("simulator background work failed: %s", what)

    def lanes(self) -> asyncio.Queue[httpx.AsyncClient]:
        """The free outgoing clients, created on first use inside the running loop."""
        if self._lanes is None:
            # trust_env=False: callbacks go to local or cluster-internal URLs, never through a proxy.
            self._clients = [
                httpx.AsyncClient(timeout=_CALLBACK_TIMEOUT, limits=_LANE_LIMITS, trust_env=False, verify=tls_context())
                for _ in range(_CALLBACK_CONCURRENCY)
            ]
            self._lanes = asyncio.Queue()
            for client in self._clients:
                self._lanes.put_nowait(client)
        return self._lanes

    async def close(self) -> None:
        """Cancel pending callbacks and close the outgoing client."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in self._clients:
            await client.aclose()
        self._clients = []
        self._lanes = None  # a later loop makes its own

    async def deliver(self, url: str, content_type: str, make_body: Callable[[int], bytes]) -> None:
        """POST a signed callback, trying up to ``webhook_retries`` times; ``make_body(attempt)`` gives bytes."""
        if not self.config.callbacks:
            return
        tries = max(1, self.config.webhook_retries)
        problem = ""
        for attempt in range(1, tries + 1):
            body = make_body(attempt)
            timestamp = str(int(_now().timestamp()))
            headers = {
                "content-type": content_type,
                SIGNATURE_HEADER: sign(self.key, timestamp, body),
                TIMESTAMP_HEADER: timestamp,
            }
            try:
                lanes = self.lanes()
                client = await lanes.get()
                try:
                    response = await client.post(url, content=body, headers=headers)
                finally:
                    lanes.put_nowait(client)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return
                problem = f"HTTP {response.status_code}"
            if attempt < tries:
                await asyncio.sleep(_RETRY_BACKOFF_SECS * attempt)
        log.warning("simulator gave up on a callback to %s after %d tries: %s", url, tries, problem)

    async def deliver_event(self, url: str | None, event_type: str, payload: dict[str, Any]) -> None:
        """Send one JSON webhook in the Telnyx event envelope (same event id on every try)."""
        if url is None:
            return
        data = {
            "record_type": "event",
            "event_type": event_type,
            "id": str(uuid.uuid4()),
            "occurred_at": _iso(_now()),
            "payload": payload,
        }

        def body(attempt: int) -> bytes:
            return _json_dumps({"data": data, "meta": {"attempt": attempt, "delivered_to": url}})

        await self.deliver(url, "application/json", body)

    async def run_texml_call(self, call: _Call, status: str, url: str | None) -> None:
        """Form-encoded status callbacks: initiated, ringing, then the outcome (in-progress first if answered)."""

        async def send(call_status: str, sequence: int, extra: dict[str, str] | None = None) -> None:
            if url is None:
                return
            fields = {
                "AccountSid": self.account_sid,
                "CallSid": call.call_control_id,
                "CallControlId": call.call_control_id,
                "CallSessionId": call.call_session_id,
                "ConnectionId": call.connection_id,
                "From": call.from_,
                "To": call.to,
                "CallStatus": call_status,
                "SequenceNumber": str(sequence),
                "Timestamp": _iso(_now()),
                **(extra or {}),
            }
            body = urlencode(fields).encode()
            await self.deliver(url, "application/x-www-form-urlencoded", lambda _attempt: body)

        def terminal() -> dict[str, str]:
            cause, source = _HANGUP[status]
            return {
                "CallDuration": str(call.call_duration or 0),
                "EndTime": _iso(_now()),
                "HangupCause": cause,
                "HangupSource": source,
            }

        await send("initiated", 0)
        await send("ringing", 1)
        await asyncio.sleep(self.config.ring_delay)
        if status != "completed":
            self.hang_up(call, status)
            await send(status, 2, terminal())
            return
        answered_at = _iso(_now())
        await send("in-progress", 2, {"AnsweredTime": answered_at})
        await asyncio.sleep(self.config.talk_delay)
        self.hang_up(call, status)
        await send("completed", 3, {"AnsweredTime": answered_at, **terminal()})

    async def run_call_control_call(self, call: _Call, status: str, url: str | None, client_state: str | None) -> None:
        """JSON webhooks: call.initiated, call.answered (completed calls only), call.hangup."""

        def payload(state: str) -> dict[str, Any]:
            return {
                "call_control_id": call.call_control_id,
                "call_leg_id": call.call_leg_id,
                "call_session_id": call.call_session_id,
                "connection_id": call.connection_id,
                "from": call.from_,
                "to": call.to,
                "direction": "outgoing",
                "client_state": client_state,
                "state": state,
            }

        await self.deliver_event(url, "call.initiated", payload("bridging"))
        await asyncio.sleep(self.config.ring_delay)
        if status == "completed":
            await self.deliver_event(url, "call.answered", payload("answered"))
            await asyncio.sleep(self.config.talk_delay)
        self.hang_up(call, status)
        cause, source = _HANGUP[status]
        hangup = payload("hangup") | {
            "hangup_cause": cause,
            "hangup_source": source,
            "start_time": _iso(call.started_at),
            "end_time": _iso(_now()),
        }
        await self.deliver_event(url, "call.hangup", hangup)

    async def run_message(self, message: dict[str, Any], status: str, url: str | None) -> None:
        """JSON webhooks: message.sent, then message.finalized with the final ``to[0].status``."""
        sent = json.loads(json.dumps(message))
        sent["to"][0]["status"] = "sent"
        sent["sent_at"] = _iso(_now())
        await self.deliver_event(url, "message.sent", sent)
        await asyncio.sleep(self.config.ring_delay)
        finalized = json.loads(json.dumps(sent))
        finalized["to"][0]["status"] = status
        finalized["completed_at"] = _iso(_now())
        if status in _MESSAGE_ERRORS:
            finalized["errors"] = [_MESSAGE_ERRORS[status]]
        await self.deliver_event(url, "message.finalized", finalized)


def create_app(config: SimulatorConfig) -> FastAPI:
    """Build the simulator app. Raises ``ValueError`` for a bad ``mix`` or private key."""
    sim = _Simulator(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await sim.close()

    app = FastAPI(title="Telnyx simulator (test double)", lifespan=lifespan)
    app.state.simulator = sim

    @app.exception_handler(_ApiError)
    async def api_error(_request: Request, exc: _ApiError) -> JSONResponse:
        return exc.response()

    async def answer(entry: dict[str, Any], handle: Coroutine[Any, Any, JSONResponse]) -> JSONResponse:
        try:
            response = await handle
        except _ApiError as exc:
            response = exc.response()
        entry["status_code"] = response.status_code
        return response

    async def hold(entry: dict[str, Any]) -> None:
        entry["status_code"] = 200
        await asyncio.sleep(config.response_delay_on_timeout)

    # -- Telnyx surface ------------------------------------------------------------------------------

    @app.post("/v2/texml/ai_calls/{connection_id}")
    async def create_ai_call(connection_id: str, request: Request) -> JSONResponse:
        """TeXML outbound AI-assistant call; status callbacks are form-encoded."""
        raw = await request.body()
        entry = sim.record(sim.calls_log, request, raw)

        async def handle() -> JSONResponse:
            _authorize(request)
            body = _json_object(raw)
            from_ = _required_str(body, "From")
            to = _required_str(body, "To")
            _required_str(body, "AIAssistantId")
            callback = _optional_url(body, "StatusCallback")
            outcome = entry["outcome"] = sim.next_outcome(to)
            error = _injected_error(outcome, "/To", dial=True)
            if error is not None:
                raise error
            call = sim.new_call(connection_id, from_, to)
            entry["provider_id"] = call.call_control_id
            sim.spawn(sim.run_texml_call(call, _call_status(outcome), callback), "texml call")
            reply = {"from": from_, "to": to, "status": "queued", "call_sid": call.call_control_id}
            if outcome == "timeout":
                await hold(entry)
            return JSONResponse(reply)

        return await answer(entry, handle())

    @app.post("/v2/calls")
    async def dial(request: Request) -> JSONResponse:
        """Call Control dial; a repeated ``command_id`` gets the first answer and places nothing."""
        raw = await request.body()
        entry = sim.record(sim.calls_log, request, raw)

        async def handle() -> JSONResponse:
            _authorize(request)
            body = _json_object(raw)
            connection_id = _required_str(body, "connection_id")
            from_ = _required_str(body, "from")
            to = _required_str(body, "to")
            command_id = _optional_str(body, "command_id")
            webhook_url = _optional_url(body, "webhook_url")
            client_state = _optional_str(body, "client_state")
            if body.get("assistant") is not None and not isinstance(body["assistant"], dict):
                raise _invalid("'assistant' must be an object.", "/assistant")
            timeout_secs = body.get("timeout_secs")
            if timeout_secs is not None and (isinstance(timeout_secs, bool) or not isinstance(timeout_secs, int)):
                raise _invalid("'timeout_secs' must be an integer.", "/timeout_secs")
            if command_id is not None and command_id in sim.dials_by_command_id:
                prior = sim.dials_by_command_id[command_id]
                entry.update(duplicate=True, outcome=prior.outcome, provider_id=prior.provider_id)
                return JSONResponse(prior.body)
            outcome = entry["outcome"] = sim.next_outcome(to)
            error = _injected_error(outcome, "/to", dial=True)
            if error is not None:
                raise error
            call = sim.new_call(connection_id, from_, to)
            entry["provider_id"] = call.call_control_id
            reply = {
                "data": {
                    "call_control_id": call.call_control_id,
                    "call_leg_id": call.call_leg_id,
                    "call_session_id": call.call_session_id,
                    "is_alive": False,
                    "record_type": "call",
                }
            }
            if command_id is not None:
                sim.dials_by_command_id[command_id] = _Accepted(reply, outcome, call.call_control_id)
            sim.spawn(
                sim.run_call_control_call(call, _call_status(outcome), webhook_url, client_state),
                "call control call",
            )
            if outcome == "timeout":
                await hold(entry)
            return JSONResponse(reply)

        return await answer(entry, handle())

    @app.get("/v2/calls/{call_control_id}")
    async def retrieve_call(call_control_id: str, request: Request) -> JSONResponse:
        """Call status: ``is_alive`` until the terminal callback, then the duration."""
        _authorize(request)
        call = sim.calls.get(call_control_id)
        if call is None:
            raise _ApiError(
                404,
                {
                    "code": "10005",
                    "title": "Resource not found",
                    "detail": f"No call with call_control_id {call_control_id!r}.",
                },
            )
        return JSONResponse(
            {
                "data": {
                    "call_control_id": call.call_control_id,
                    "call_leg_id": call.call_leg_id,
                    "call_session_id": call.call_session_id,
                    "is_alive": call.is_alive,
                    "call_duration": call.call_duration,
                    "record_type": "call",
                }
            }
        )

    @app.post("/v2/messages")
    async def send_message(request: Request) -> JSONResponse:
        """Send an SMS; a repeated ``Idempotency-Key`` gets the first answer and sends nothing."""
        raw = await request.body()
        entry = sim.record(sim.messages_log, request, raw)

        async def handle() -> JSONResponse:
            _authorize(request)
            body = _json_object(raw)
            from_ = _required_str(body, "from")
            to = _required_str(body, "to")
            text = _required_str(body, "text")
            webhook_url = _optional_url(body, "webhook_url")
            profile_id = _optional_str(body, "messaging_profile_id")
            key = request.headers.get("idempotency-key")
            if key is not None and not _IDEMPOTENCY_KEY.match(key):
                raise _ApiError(
                    422,
                    {
                        "code": "10015",
                        "title": "Invalid parameter",
                        "detail": "Idempotency-Key must match ^[A-Za-z0-9_:-]{1,255}$.",
                        "source": {"parameter": "Idempotency-Key"},
                    },
                )
            if key is not None and key in sim.messages_by_key:
                prior = sim.messages_by_key[key]
                entry.update(duplicate=True, outcome=prior.outcome, provider_id=prior.provider_id)
                return JSONResponse(prior.body)
            if to in sim.blocked:
                entry["outcome"] = "blocked"
                raise _ApiError(
                    400,
                    {
                        "code": "40300",
                        "title": "Blocked due to STOP message",
                        "detail": f"Messages cannot be sent from '{from_}' to '{to}' due to an existing block rule.",
                    },
                )
            outcome = entry["outcome"] = sim.next_outcome(to)
            error = _injected_error(outcome, "/to", dial=False)
            if error is not None:
                raise error
            message: dict[str, Any] = {
                "record_type": "message",
                "id": str(uuid.uuid4()),
                "direction": "outbound",
                "type": "SMS",
                "messaging_profile_id": profile_id,
                "from": {"phone_number": from_},
                "to": [{"phone_number": to, "status": "queued"}],
                "text": text,
                "webhook_url": webhook_url,
                "errors": [],
            }
            entry["provider_id"] = message["id"]
            reply = {"data": message}
            if key is not None:
                sim.messages_by_key[key] = _Accepted(reply, outcome, message["id"])
            sim.spawn(sim.run_message(message, _message_status(outcome), webhook_url), "message")
            if outcome == "timeout":
                await hold(entry)
            return JSONResponse(reply)

        return await answer(entry, handle())

    # -- simulator control ---------------------------------------------------------------------------

    @app.post("/_simulator/script")
    async def set_script(request: Request) -> JSONResponse:
        """Replace the script: ``{"targets": {to: [outcome, ...]}, "default": outcome, "mix": {...}}``."""
        body = _json_object(await request.body(), status_code=400)
        targets = body.get("targets") or {}
        if not isinstance(targets, dict):
            raise _invalid("'targets' must be an object of destination -> list of outcomes.", "/targets", 400)
        queues: dict[str, deque[str]] = {}
        for to, outcomes in targets.items():
            pointer = "/targets/" + to.replace("~", "~0").replace("/", "~1")
            if not isinstance(outcomes, list):
                raise _invalid(f"targets[{to!r}] must be a list of outcomes.", pointer, 400)
            for index, outcome in enumerate(outcomes):
                if not isinstance(outcome, str) or outcome not in OUTCOMES:
                    raise _invalid(
                        f"Unknown outcome {outcome!r} in targets[{to!r}] (valid: {', '.join(sorted(OUTCOMES))}).",
                        f"{pointer}/{index}",
                        400,
                    )
            queues[to] = deque(outcomes)
        default = body.get("default")
        if default is not None and (not isinstance(default, str) or default not in OUTCOMES):
            raise _invalid(
                f"Unknown outcome {default!r} in default (valid: {', '.join(sorted(OUTCOMES))}).",
                "/default",
                400,
            )
        mix = body.get("mix")
        if mix is not None:
            if not isinstance(mix, dict):
                raise _invalid("'mix' must be an object of outcome -> weight.", "/mix", 400)
            try:
                mix = _validate_mix(mix)
            except ValueError as exc:
                raise _invalid(str(exc), "/mix", 400) from None
        sim.script = _Script(targets=queues, default=default, mix=mix)
        return JSONResponse({"targets": {to: list(q) for to, q in queues.items()}, "default": default, "mix": mix})

    @app.post("/_simulator/inbound")
    async def inbound_message(request: Request) -> JSONResponse:
        """A recipient texts back: ``{"from", "to", "text", "webhook_url"}`` → a signed ``message.received``.

        Opt-out and opt-in keywords update the block rules first, as Telnyx does. Answers once the webhook was
        delivered (or given up on).
        """
        body = _json_object(await request.body(), status_code=400)
        from_ = _required_str(body, "from")
        to = _required_str(body, "to")
        text = _optional_str(body, "text") or ""
        webhook_url = _optional_url(body, "webhook_url")
        keyword = " ".join(text.upper().split())
        if keyword in _OPT_OUT_KEYWORDS:
            sim.blocked.add(from_)
        elif keyword in _OPT_IN_KEYWORDS:
            sim.blocked.discard(from_)
        payload = {
            "record_type": "message",
            "direction": "inbound",
            "id": str(uuid.uuid4()),
            "type": "SMS",
            "from": {"phone_number": from_, "carrier": "SIMULATED", "line_type": "Wireless"},
            "to": [{"phone_number": to, "status": "delivered", "carrier": "TELNYX LLC", "line_type": "VoIP"}],
            "text": text,
            "media": [],
            "received_at": _iso(_now()),
            "errors": [],
        }
        await sim.deliver_event(webhook_url, "message.received", payload)
        return JSONResponse({"id": payload["id"], "blocked": from_ in sim.blocked})

    @app.post("/_simulator/block")
    async def block(request: Request) -> JSONResponse:
        """``{"phone_number", "blocked"?: true}``: set a block rule (sends to it get 40300) without a webhook."""
        body = _json_object(await request.body(), status_code=400)
        phone = _required_str(body, "phone_number")
        if body.get("blocked", True):
            sim.blocked.add(phone)
        else:
            sim.blocked.discard(phone)
        return JSONResponse({"blocked": sorted(sim.blocked)})

    @app.get("/_simulator/calls")
    async def list_calls() -> JSONResponse:
        """Every call request received, in order, rejected ones included."""
        return JSONResponse({"data": sim.calls_log})

    @app.get("/_simulator/messages")
    async def list_messages() -> JSONResponse:
        """Every message request received, in order, rejected ones included."""
        return JSONResponse({"data": sim.messages_log})

    @app.get("/_simulator/public-key")
    async def public_key() -> JSONResponse:
        """The base64 Ed25519 public key the callbacks are signed with."""
        return JSONResponse({"public_key": sim.public_key})

    @app.post("/_simulator/reset")
    async def reset() -> JSONResponse:
        """Clear logs, script, dedupe tables and calls; pending callbacks are cancelled."""
        sim.reset()
        return JSONResponse({"status": "ok"})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Liveness."""
        return JSONResponse({"status": "ok"})

    return app


def run(host: str = "127.0.0.1", port: int = 8081, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator with uvicorn until interrupted."""
    uvicorn.run(create_app(config or SimulatorConfig()), host=host, port=port, log_level="warning")
