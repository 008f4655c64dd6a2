"""The HTTP surface: the Telnyx-shaped endpoints the worker calls, and the ``/_simulator/*`` control API.

The handlers find the app's state and delivery on ``request.app.state`` (set by ``create_app``) rather than
through ``Depends``: a plain attribute read costs nothing per request, and the simulator's CPU is what bounds
the benchmarks that drive it.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from campaigns.states import CallStatus, MessageStatus
from worker.simulator.config import (
    ACCOUNT_REJECTIONS,
    ANSWERED_BY_OUTCOMES,
    CHANNEL_LIMIT,
    COMPLETED_LATE,
    ScriptError,
    call_status,
    message_status,
    parse_script,
)
from worker.simulator.delivery import Delivery, TexmlAmd
from worker.simulator.errors import (
    ACCOUNT_ERRORS,
    ApiError,
    injected_error,
    invalid,
    json_object,
    optional_str,
    optional_url,
    placed_error,
    required_str,
)
from worker.simulator.errors import (
    authorize as check_bearer,
)
from worker.simulator.state import COMMAND_ID_WINDOW_SECS, Accepted, Call, SimulatorState, now_iso

_OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
_OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_:-]{1,255}$")

router = APIRouter()


def authorize(request: Request) -> None:
    """A bearer token is required; while the script's default is ``http_401`` / ``http_403`` the whole account is
    refused, every authenticated endpoint included (a rejected or rotated key, as the real network has it)."""
    check_bearer(request)
    default = state_of(request).script.default
    if default in ACCOUNT_REJECTIONS:
        raise ACCOUNT_ERRORS[default]


def state_of(request: Request) -> SimulatorState:
    state: SimulatorState = request.app.state.simulator
    return state


def delivery_of(request: Request) -> Delivery:
    delivery: Delivery = request.app.state.delivery
    return delivery


async def _answer(entry: dict[str, Any], handle: Coroutine[Any, Any, JSONResponse]) -> JSONResponse:
    """Run a handler, answering an ``ApiError`` with its envelope, and log the status code on ``entry``."""
    try:
        response = await handle
    except ApiError as exc:
        response = exc.response()
    entry["status_code"] = response.status_code
    return response


async def _hold(request: Request, entry: dict[str, Any]) -> None:
    """The ``timeout`` outcome: the request was placed, but the answer comes too late for the client."""
    entry["status_code"] = 200
    await asyncio.sleep(delivery_of(request).config.response_delay_on_timeout)


def _fail_after_placing(outcome: str) -> None:
    """``http_500``: placed (logged with its provider id, callbacks under way), then answered 500."""
    error = placed_error(outcome)
    if error is not None:
        raise error


def _place_call(
    sim: SimulatorState, entry: dict[str, Any], connection_id: str, from_: str, to: str, pointer: str
) -> tuple[str, Call]:
    """Draw the outcome for ``to`` and raise the provider error it injects, or place the call."""
    outcome = entry["outcome"] = sim.next_outcome(to)
    error = injected_error(outcome, pointer, dial=True)
    if error is not None:
        raise error
    call = sim.new_call(connection_id, from_, to)
    entry["provider_id"] = call.call_control_id
    return outcome, call


def answerer(outcome: str) -> str:
    """Who picks up a call with this outcome: a machine, a call-screening assistant, a fax, else a person."""
    return outcome if outcome in ANSWERED_BY_OUTCOMES else "human"


# -- Telnyx surface ------------------------------------------------------------------------------


@router.post("/v2/texml/ai_calls/{connection_id}")
async def create_ai_call(connection_id: str, request: Request) -> JSONResponse:
    """TeXML outbound AI-assistant call; status callbacks are form-encoded."""
    sim, delivery = state_of(request), delivery_of(request)
    raw = await request.body()
    entry = sim.record(sim.calls_log, request.url.path, request.headers.get("idempotency-key"), raw)

    async def handle() -> JSONResponse:
        authorize(request)
        body = json_object(raw)
        from_ = required_str(body, "From")
        to = required_str(body, "To")
        required_str(body, "AIAssistantId")
        callback = optional_url(body, "StatusCallback")
        outcome, call = _place_call(sim, entry, connection_id, from_, to, "/To")
        amd = None
        if isinstance(body.get("MachineDetection"), str):
            amd = TexmlAmd(
                str(body["MachineDetection"]),
                str(body["DetectionMode"]) if isinstance(body.get("DetectionMode"), str) else None,
                optional_url(body, "AsyncAmdStatusCallback") if body.get("AsyncAmd") in (True, "true") else None,
            )
        delivery.spawn(
            delivery.run_texml_call(
                call,
                call_status(outcome),
                callback,
                answerer(outcome),
                amd,
                channel_limit=outcome == CHANNEL_LIMIT,
                late=outcome == COMPLETED_LATE,
            ),
            "texml call",
        )
        reply = {"from": from_, "to": to, "status": CallStatus.QUEUED, "call_sid": call.call_control_id}
        if outcome == "timeout":
            await _hold(request, entry)
        _fail_after_placing(outcome)
        return JSONResponse(reply)

    return await _answer(entry, handle())


@router.post("/v2/calls")
async def dial(request: Request) -> JSONResponse:
    """Call Control dial; a ``command_id`` repeated within 60 s gets the first answer and places nothing."""
    sim, delivery = state_of(request), delivery_of(request)
    raw = await request.body()
    entry = sim.record(sim.calls_log, request.url.path, request.headers.get("idempotency-key"), raw)

    async def handle() -> JSONResponse:
        authorize(request)
        body = json_object(raw)
        connection_id = required_str(body, "connection_id")
        from_ = required_str(body, "from")
        to = required_str(body, "to")
        command_id = optional_str(body, "command_id")
        webhook_url = optional_url(body, "webhook_url")
        client_state = optional_str(body, "client_state")
        if body.get("assistant") is not None and not isinstance(body["assistant"], dict):
            raise invalid("'assistant' must be an object.", "/assistant")
        timeout_secs = body.get("timeout_secs")
        if timeout_secs is not None and (isinstance(timeout_secs, bool) or not isinstance(timeout_secs, int)):
            raise invalid("'timeout_secs' must be an integer.", "/timeout_secs")
        prior = sim.dials_by_command_id.get(command_id) if command_id is not None else None
        if prior is not None and time.monotonic() - prior.at < COMMAND_ID_WINDOW_SECS:
            entry.update(duplicate=True, outcome=prior.outcome, provider_id=prior.provider_id)
            return JSONResponse(prior.body)
        outcome, call = _place_call(sim, entry, connection_id, from_, to, "/to")
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
            sim.dials_by_command_id[command_id] = Accepted(reply, outcome, call.call_control_id)
        delivery.spawn(
            delivery.run_call_control_call(
                call,
                call_status(outcome),
                webhook_url,
                client_state,
                answerer(outcome),
                optional_str(body, "answering_machine_detection"),
                channel_limit=outcome == CHANNEL_LIMIT,
                late=outcome == COMPLETED_LATE,
            ),
            "call control call",
        )
        if outcome == "timeout":
            await _hold(request, entry)
        _fail_after_placing(outcome)
        return JSONResponse(reply)

    return await _answer(entry, handle())


@router.get("/v2/balance")
async def balance(request: Request) -> JSONResponse:
    """The account's balance (what the engine probes a held account with: read-only, dials nothing)."""
    authorize(request)
    return JSONResponse(
        {
            "data": {
                "record_type": "balance",
                "balance": "300.00",
                "pending": "0.00",
                "credit_limit": "0.00",
                "available_credit": "300.00",
                "currency": "USD",
            }
        }
    )


@router.post("/v2/messages")
async def send_message(request: Request) -> JSONResponse:
    """Send an SMS; a repeated ``Idempotency-Key`` gets the first answer and sends nothing."""
    sim, delivery = state_of(request), delivery_of(request)
    raw = await request.body()
    entry = sim.record(sim.messages_log, request.url.path, request.headers.get("idempotency-key"), raw)

    async def handle() -> JSONResponse:
        authorize(request)
        body = json_object(raw)
        from_ = required_str(body, "from")
        to = required_str(body, "to")
        text = required_str(body, "text")
        webhook_url = optional_url(body, "webhook_url")
        profile_id = optional_str(body, "messaging_profile_id")
        key = request.headers.get("idempotency-key")
        if key is not None and not _IDEMPOTENCY_KEY.match(key):
            raise ApiError(
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
            raise ApiError(
                400,
                {
                    "code": "40300",
                    "title": "Blocked due to STOP message",
                    "detail": f"Messages cannot be sent from '{from_}' to '{to}' due to an existing block rule.",
                },
            )
        outcome = entry["outcome"] = sim.next_outcome(to)
        error = injected_error(outcome, "/to", dial=False)
        if error is not None:
            raise error
        message: dict[str, Any] = {
            "record_type": "message",
            "id": str(uuid.uuid4()),
            "direction": "outbound",
            "type": "SMS",
            "messaging_profile_id": profile_id,
            "from": {"phone_number": from_},
            "to": [{"phone_number": to, "status": MessageStatus.QUEUED}],
            "text": text,
            "webhook_url": webhook_url,
            "errors": [],
        }
        entry["provider_id"] = message["id"]
        reply = {"data": message}
        if key is not None:
            sim.messages_by_key[key] = Accepted(reply, outcome, message["id"])
        delivery.spawn(delivery.run_message(message, message_status(outcome), webhook_url), "message")
        if outcome == "timeout":
            await _hold(request, entry)
        _fail_after_placing(outcome)
        return JSONResponse(reply)

    return await _answer(entry, handle())


# -- simulator control ---------------------------------------------------------------------------


@router.post("/_simulator/script")
async def set_script(request: Request) -> JSONResponse:
    """Replace the script: ``{"targets": {to: [outcome, ...]}, "default": outcome, "mix": {...}}``."""
    body = json_object(await request.body(), status_code=400)
    try:
        script = parse_script(body)
    except ScriptError as exc:
        raise invalid(exc.detail, exc.pointer, 400) from None
    state_of(request).script = script
    return JSONResponse(script.as_json())


@router.post("/_simulator/inbound")
async def inbound_message(request: Request) -> JSONResponse:
    """A recipient texts back: ``{"from", "to", "text", "webhook_url"}`` → a signed ``message.received``.

    Opt-out and opt-in keywords update the block rules first, as Telnyx does. Answers once the webhook was
    delivered (or given up on).
    """
    sim = state_of(request)
    body = json_object(await request.body(), status_code=400)
    from_ = required_str(body, "from")
    to = required_str(body, "to")
    text = optional_str(body, "text") or ""
    webhook_url = optional_url(body, "webhook_url")
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
        "to": [{"phone_number": to, "status": MessageStatus.DELIVERED, "carrier": "TELNYX LLC", "line_type": "VoIP"}],
        "text": text,
        "media": [],
        "received_at": now_iso(),
        "errors": [],
    }
    await delivery_of(request).deliver_event(webhook_url, "message.received", payload)
    return JSONResponse({"id": payload["id"], "blocked": from_ in sim.blocked})


@router.post("/_simulator/block")
async def block(request: Request) -> JSONResponse:
    """``{"phone_number", "blocked"?: true}``: set a block rule (sends to it get 40300) without a webhook."""
    sim = state_of(request)
    body = json_object(await request.body(), status_code=400)
    phone = required_str(body, "phone_number")
    if body.get("blocked", True):
        sim.blocked.add(phone)
    else:
        sim.blocked.discard(phone)
    return JSONResponse({"blocked": sorted(sim.blocked)})


@router.get("/_simulator/calls")
async def list_calls(request: Request) -> JSONResponse:
    """Every call request received, in order, rejected ones included."""
    return JSONResponse({"data": state_of(request).calls_log})


@router.get("/_simulator/messages")
async def list_messages(request: Request) -> JSONResponse:
    """Every message request received, in order, rejected ones included."""
    return JSONResponse({"data": state_of(request).messages_log})


@router.get("/_simulator/deliveries")
async def deliveries(request: Request) -> JSONResponse:
    """How the callbacks went out: how many, retried, given up, and percentiles of the wait for a free lane and
    of the receiver's answer (real seconds); and how many status questions the engine asked."""
    return JSONResponse({**delivery_of(request).timing_summary(), "queries": dict(state_of(request).queries)})


@router.get("/_simulator/public-key")
async def public_key(request: Request) -> JSONResponse:
    """The base64 Ed25519 public key the callbacks are signed with."""
    return JSONResponse({"public_key": delivery_of(request).public_key})


@router.post("/_simulator/reset")
async def reset(request: Request) -> JSONResponse:
    """Clear logs, script, dedupe tables and calls; pending callbacks are cancelled."""
    delivery_of(request).cancel_pending()
    delivery_of(request).timings.clear()
    delivery_of(request).problems.clear()
    state_of(request).reset()
    return JSONResponse({"status": "ok"})


@router.get("/healthz")
async def healthz() -> JSONResponse:
    """Liveness."""
    return JSONResponse({"status": "ok"})
