"""Signed status callbacks and webhooks: what each call and message sends back, and how it is delivered.

Callbacks for one call are sent sequentially by one background task per call, over a fixed set of outgoing
clients ("lanes"); each is signed with the simulator's Ed25519 key the way Telnyx signs, and retried like
Telnyx retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from campaigns.clock import iso, utcnow_real
from campaigns.states import CallStatus, MessageStatus
from campaigns.telephony import tls_context
from campaigns.telephony.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, public_key_b64, sign
from worker.simulator.config import SimulatorConfig, load_private_key
from worker.simulator.state import Call, now_iso

log = logging.getLogger(__name__)

# Terminal call status -> (hangup cause, hangup source), shared by TeXML callbacks and Call Control webhooks.
HANGUP: dict[str, tuple[str, str]] = {
    CallStatus.COMPLETED: ("normal_clearing", "callee"),
    CallStatus.BUSY: ("user_busy", "callee"),
    CallStatus.NO_ANSWER: ("timeout", "unknown"),
    CallStatus.FAILED: ("call_rejected", "unknown"),
    CallStatus.CANCELED: ("originator_cancel", "caller"),
}
MESSAGE_ERRORS: dict[str, dict[str, str]] = {
    MessageStatus.DELIVERY_FAILED: {"code": "40008", "title": "Undeliverable", "detail": "Simulated delivery failure."},
    MessageStatus.SENDING_FAILED: {"code": "40001", "title": "Not routable", "detail": "Simulated sending failure."},
    # 40005 "Message expired: Message TTL expired before delivery" (developers.telnyx.com/docs/messaging/messages/
    # error-codes, "Delivery errors (40xxx)": they appear in ``message.finalized`` webhooks).
    MessageStatus.EXPIRED: {"code": "40005", "title": "Message expired", "detail": "Simulated expiry before delivery."},
}
CHANNEL_LIMIT_TEXML = {
    "HangupCause": "call_rejected",
    "HangupSource": "unknown",
    "SipResponseCode": "403",
    "ErrorCode": "D1",
    "ErrorMessage": "User channel limit exceeded",
}
"""The ``failed`` callback of a call over the account's channel limit. Telnyx rejects it with SIP "403 User
channel limit exceeded D1" (developers.telnyx.com/docs/voice/sip-trunking/configuration/concurrent-limits; D1
in docs/voice/sip-trunking/troubleshooting/response-codes); the TeXML status callbacks carry ``HangupCause``,
``HangupSource``, ``ErrorCode`` and ``ErrorMessage`` (api-reference/callbacks/texml-call-completed), and the SIP
status goes in ``SipResponseCode`` (the TeXML/TwiML name for it)."""
CHANNEL_LIMIT_HANGUP = {"hangup_cause": "call_rejected", "hangup_source": "unknown", "sip_hangup_cause": "403"}
"""The Call Control ``call.hangup`` of the same refusal: ``sip_hangup_cause`` is "the reason the call was ended
(SIP response code)" (the official SDK's ``types/call_hangup.py``)."""


# Telnyx wants a webhook answered within 2 s; be more forgiving so a loaded benchmark box is not punished.
@dataclass(frozen=True)
class TexmlAmd:
    """What an ``ai_calls`` request asked of answering-machine detection (``MachineDetection``, ``DetectionMode``,
    ``AsyncAmd`` + ``AsyncAmdStatusCallback``)."""

    machine_detection: str
    detection_mode: str | None
    async_callback: str | None

    def answered_by(self, answerer: str) -> str | None:
        """The ``AnsweredBy`` Telnyx reports for who answered (TwiML-style values, as TeXML uses them): a machine
        is ``machine_end_beep`` once the greeting's end is awaited (``DetectMessageEnd``), else
        ``machine_start``; call screening is told apart only by ``PremiumCallScreening`` (else it is a machine)."""
        if self.machine_detection not in ("Enable", "DetectMessageEnd"):
            return None
        machine = "machine_end_beep" if self.machine_detection == "DetectMessageEnd" else "machine_start"
        if answerer == "machine":
            return machine
        if answerer == "screened":
            return "screening" if self.detection_mode == "PremiumCallScreening" else machine
        if answerer == "fax":
            return "fax"
        return "human"


def call_control_detection(amd: str | None, answerer: str) -> list[tuple[str, str]]:
    """The detection webhooks a Call Control dial with ``answering_machine_detection = amd`` gets: standard
    detection sends ``call.machine.detection.ended`` (human | machine | not_sure), premium sends
    ``call.machine.premium.detection.ended`` (human_residence | machine | fax_detected | …) and, with iOS call
    screening, ``call.machine.premium.call_screening.detected`` (``screening``) after a ``machine`` result
    (the official SDK's ``call_dial_params.py``, 4.189.0)."""
    if amd is None or amd == "disabled":
        return []
    if amd.startswith("premium"):
        result = {"machine": "machine", "screened": "machine", "fax": "fax_detected"}.get(answerer, "human_residence")
        events = [("call.machine.premium.detection.ended", result)]
        if answerer == "screened" and amd == "premium_ios_call_screening_detection":
            events.append(("call.machine.premium.call_screening.detected", "screening"))
        return events
    result = {"machine": "machine", "screened": "machine", "fax": "not_sure"}.get(answerer, "human")
    return [("call.machine.detection.ended", result)]


TEXML_STATUS_PATH = "/webhooks/telnyx/call-status"
CALLBACK_TIMEOUT = httpx.Timeout(5.0, pool=None)
# Callbacks in flight at once (``SimulatorConfig.callback_lanes``), each on its own single-connection client (a
# "lane"). httpcore scans every pooled connection (and polls its socket) for every request, and every queued
# request on each change, so one shared pool costs O(connections) or worse per callback: 79% of the simulator's CPU
# with a deep queue. Callbacks beyond the lanes wait for a free one; that wait is the simulator being behind, not
# the engine, so there are enough lanes that the receiver's answers, not the lanes, set the pace (issue 21: with
# 32, a kill -9 run's callbacks waited up to 3.4 s for a lane while the receiver answered within 0.5 s).
LANE_LIMITS = httpx.Limits(max_connections=1, max_keepalive_connections=1)
RETRY_BACKOFF_SECS = 0.2
TIMINGS_KEPT = 200_000
"""Delivery timings kept for ``GET /_simulator/deliveries`` (the newest; a full-size chaos run sends ~60,000)."""


@dataclass(frozen=True)
class DeliveryTiming:
    """One callback's way out, in real seconds: waiting for a free lane (the simulator behind), then the
    receiver's answer (the engine's webhook path: its accept queue, signature check, commit)."""

    lane_wait: float
    round_trip: float
    tries: int
    delivered: bool


def percentiles(values: list[float], digits: int = 4) -> dict[str, float]:
    """How many, p50, p90, p99 and max of ``values`` (rounded to ``digits``); empty when there are none."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], digits)

    return {"n": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1], digits)}


def _json_dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Delivery:
    """The background callback machinery of one simulator app. Raises ``ValueError`` for a bad private key."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.key = load_private_key(config.private_key_b64)
        self.public_key = public_key_b64(self.key)
        self.account_sid = str(uuid.uuid4())
        self.tasks: set[asyncio.Task[None]] = set()
        self._lanes: asyncio.Queue[httpx.AsyncClient] | None = None
        self._clients: list[httpx.AsyncClient] = []
        self.timings: deque[DeliveryTiming] = deque(maxlen=TIMINGS_KEPT)
        self.problems: Counter[str] = Counter()
        """Why tries failed (``HTTP 503``, ``ConnectError``…), for ``GET /_simulator/deliveries``."""

    def timing_summary(self) -> dict[str, Any]:
        """Percentiles of the kept delivery timings (``GET /_simulator/deliveries``): where a late callback waited."""
        timings = list(self.timings)
        return {
            "callbacks": len(timings),
            "retried": sum(1 for t in timings if t.tries > 1),
            "given_up": sum(1 for t in timings if not t.delivered),
            "lanes": self.config.callback_lanes,
            "lane_wait_secs": percentiles([t.lane_wait for t in timings]),
            "round_trip_secs": percentiles([t.round_trip for t in timings]),
            "failed_tries": dict(self.problems.most_common(10)),
        }

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

    def cancel_pending(self) -> None:
        """Stop every pending callback (``POST /_simulator/reset``)."""
        for task in self.tasks:
            task.cancel()

    def lanes(self) -> asyncio.Queue[httpx.AsyncClient]:
        """The free outgoing clients (created inside the running loop, one more each time all are busy)."""
        if self._lanes is None:
            self._lanes = asyncio.Queue()
        return self._lanes

    async def _lane(self) -> httpx.AsyncClient:
        """A free lane: an idle one, a new one while fewer than ``callback_lanes`` exist, else the next freed."""
        lanes = self.lanes()
        if lanes.empty() and len(self._clients) < max(1, self.config.callback_lanes):
            # trust_env=False: callbacks go to local or cluster-internal URLs, never through a proxy.
            client = httpx.AsyncClient(
                timeout=CALLBACK_TIMEOUT, limits=LANE_LIMITS, trust_env=False, verify=tls_context()
            )
            self._clients.append(client)
            return client
        return await lanes.get()

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

    # -- sending -------------------------------------------------------------------------------------

    async def deliver(self, url: str, content_type: str, make_body: Callable[[int], bytes]) -> None:
        """POST a signed callback, trying up to ``webhook_retries`` times; ``make_body(attempt)`` gives bytes."""
        if not self.config.callbacks:
            return
        tries = max(1, self.config.webhook_retries)
        problem = ""
        waited = 0.0
        round_trip = 0.0
        for attempt in range(1, tries + 1):
            body = make_body(attempt)
            timestamp = str(int(utcnow_real().timestamp()))
            headers = {
                "content-type": content_type,
                SIGNATURE_HEADER: sign(self.key, timestamp, body),
                TIMESTAMP_HEADER: timestamp,
            }
            queued = time.monotonic()
            try:
                lanes = self.lanes()
                client = await self._lane()
                started = time.monotonic()
                waited += started - queued
                try:
                    response = await client.post(url, content=body, headers=headers)
                finally:
                    round_trip += time.monotonic() - started
                    lanes.put_nowait(client)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                self.problems[type(exc).__name__] += 1
            else:
                if response.is_success:
                    self.timings.append(DeliveryTiming(waited, round_trip, attempt, True))
                    return
                problem = f"HTTP {response.status_code}"
                self.problems[problem] += 1
            if attempt < tries:
                await asyncio.sleep(RETRY_BACKOFF_SECS * attempt)
        self.timings.append(DeliveryTiming(waited, round_trip, tries, False))
        log.warning("simulator gave up on a callback to %s after %d tries: %s", url, tries, problem)

    async def deliver_event(self, url: str | None, event_type: str, payload: dict[str, Any]) -> None:
        """Send one JSON webhook in the Telnyx event envelope (same event id on every try)."""
        if url is None:
            return
        data = {
            "record_type": "event",
            "event_type": event_type,
            "id": str(uuid.uuid4()),
            "occurred_at": now_iso(),
            "payload": payload,
        }

        def body(attempt: int) -> bytes:
            return _json_dumps({"data": data, "meta": {"attempt": attempt, "delivered_to": url}})

        await self.deliver(url, "application/json", body)

    # -- what a call or message sends back ------------------------------------------------------------

    async def run_texml_call(
        self,
        call: Call,
        status: CallStatus,
        url: str | None,
        answerer: str = "human",
        amd: TexmlAmd | None = None,
        *,
        channel_limit: bool = False,
        late: bool = False,
    ) -> None:
        """Form-encoded status callbacks: initiated, ringing, then the outcome (in-progress first if answered);
        over the account's channel limit, initiated then ``failed`` with the D1 fields. ``late``
        (``completed_late``): the call ends on time (a status query says so) but its terminal callback waits
        ``late_callback_delay`` seconds more.

        With detection requested (``amd``), an answered call reports ``AnsweredBy``: to ``AsyncAmdStatusCallback``
        on its own (``AsyncAmd``), else on the answered and completed callbacks. An answered call then has a
        conversation, and ``call.conversation.ended`` goes to the JSON webhook next to the status callback.
        """

        async def send(call_status: CallStatus, sequence: int, extra: dict[str, str] | None = None) -> None:
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
                "Timestamp": now_iso(),
                **(extra or {}),
            }
            body = urlencode(fields).encode()
            await self.deliver(url, "application/x-www-form-urlencoded", lambda _attempt: body)

        def terminal() -> dict[str, str]:
            cause, source = HANGUP[status]
            return {
                "CallDuration": str(call.call_duration or 0),
                "EndTime": now_iso(),
                "HangupCause": cause,
                "HangupSource": source,
            }

        await send(CallStatus.INITIATED, 0)
        if channel_limit:  # refused by Telnyx itself, before any ringing
            call.hang_up(CallStatus.FAILED, 0)
            await send(CallStatus.FAILED, 1, {**terminal(), "CallDuration": "0", **CHANNEL_LIMIT_TEXML})
            return
        await send(CallStatus.RINGING, 1)
        await asyncio.sleep(self.config.ring_delay)
        if status != CallStatus.COMPLETED:
            call.hang_up(status, self.config.call_duration_secs)
            await send(status, 2, terminal())
            return
        answered_at = now_iso()
        detected = amd.answered_by(answerer) if amd is not None else None
        inline = {"AnsweredBy": detected} if detected and (amd is None or not amd.async_callback) else {}
        await send(CallStatus.IN_PROGRESS, 2, {"AnsweredTime": answered_at, **inline})
        if detected and amd is not None and amd.async_callback:
            fields = {
                "AccountSid": self.account_sid,
                "CallSid": call.call_control_id,
                "AnsweredBy": detected,
                "MachineDetectionDuration": "1800",
            }
            amd_body = urlencode(fields).encode()
            await self.deliver(amd.async_callback, "application/x-www-form-urlencoded", lambda _attempt: amd_body)
        await asyncio.sleep(self.config.talk_delay)
        call.hang_up(status, self.config.call_duration_secs)
        ended = terminal()  # the real end time, even when the callback saying so comes late
        if late:
            await asyncio.sleep(self.config.late_callback_delay)
        await send(CallStatus.COMPLETED, 3, {"AnsweredTime": answered_at, **inline, **ended})
        if url is not None and TEXML_STATUS_PATH in url:
            # Telnyx sends the conversation's events as JSON webhooks; the engine's JSON receiver sits next to its
            # TeXML status callback. A status callback elsewhere (a test's receiver) gets none.
            json_url = url.replace(TEXML_STATUS_PATH, "/webhooks/telnyx", 1)
            await self.deliver_event(json_url, "call.conversation.ended", self.conversation_ended(call, None))

    def conversation_ended(self, call: Call, client_state: str | None) -> dict[str, Any]:
        """``call.conversation.ended``'s payload (the official SDK's ``telnyx/types/call_conversation_ended.py``)."""
        return {
            "call_control_id": call.call_control_id,
            "call_leg_id": call.call_leg_id,
            "call_session_id": call.call_session_id,
            "connection_id": call.connection_id,
            "client_state": client_state,
            "conversation_id": call.conversation_id,
            "duration_sec": call.call_duration or 0,
            "from": call.from_,
            "to": call.to,
            "calling_party_type": "pstn",
        }

    async def run_call_control_call(
        self,
        call: Call,
        status: CallStatus,
        url: str | None,
        client_state: str | None,
        answerer: str = "human",
        amd: str | None = None,
        *,
        channel_limit: bool = False,
        late: bool = False,
    ) -> None:
        """JSON webhooks: call.initiated, call.answered (completed calls only), the detection result where dial
        asked for one (``amd``: its ``answering_machine_detection``), call.hangup (over the account's channel
        limit: with the SIP 403 of D1), then for an answered call call.conversation.ended. ``late``
        (``completed_late``): the call ends on time (``GET /v2/calls/{id}`` says so) but call.hangup waits
        ``late_callback_delay`` seconds more."""

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
        if status == CallStatus.COMPLETED:
            await self.deliver_event(url, "call.answered", payload("answered"))
            for event_type, result in call_control_detection(amd, answerer):
                await self.deliver_event(url, event_type, payload("answered") | {"result": result})
            await asyncio.sleep(self.config.talk_delay)
        call.hang_up(status, self.config.call_duration_secs)
        cause, source = HANGUP[status]
        hangup = payload("hangup") | {
            "hangup_cause": cause,
            "hangup_source": source,
            "start_time": iso(call.started_at),
            "end_time": now_iso(),
        }
        if channel_limit:
            hangup |= CHANNEL_LIMIT_HANGUP
        if late:
            await asyncio.sleep(self.config.late_callback_delay)
        await self.deliver_event(url, "call.hangup", hangup)
        if status == CallStatus.COMPLETED:
            await self.deliver_event(url, "call.conversation.ended", self.conversation_ended(call, client_state))

    async def run_message(self, message: dict[str, Any], status: MessageStatus, url: str | None) -> None:
        """JSON webhooks: message.sent, then message.finalized with the final ``to[0].status``."""
        sent = json.loads(json.dumps(message))
        sent["to"][0]["status"] = MessageStatus.SENT
        sent["sent_at"] = now_iso()
        await self.deliver_event(url, "message.sent", sent)
        await asyncio.sleep(self.config.ring_delay)
        finalized = json.loads(json.dumps(sent))
        finalized["to"][0]["status"] = status
        finalized["completed_at"] = now_iso()
        if status in MESSAGE_ERRORS:
            finalized["errors"] = [MESSAGE_ERRORS[status]]
        await self.deliver_event(url, "message.finalized", finalized)
