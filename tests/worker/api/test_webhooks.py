"""Signed Telnyx webhooks through the real HTTP app: verification, idempotency, ordering, receipts.

The API is driven with ``TestClient`` on a runtime whose public key is the half of a key generated here; events
are created through the API, claimed and dispatched by the lifecycle (provider faked with respx), and callbacks
are posted exactly as Telnyx sends them: raw body signed with Ed25519 over ``f"{timestamp}|{body}"``, real
Unix time in ``telnyx-timestamp``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import select

from campaigns import lifecycle
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.dispatch import dispatch_attempt
from campaigns.events import parse_datetime
from campaigns.models import CallAttempt, ScheduledEvent, WebhookReceipt
from campaigns.settings import Settings
from campaigns.telephony import providers_from_settings
from campaigns.telephony.hints import signed_hint
from campaigns.telephony.signatures import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    public_key_b64,
    sign,
    verify,
)
from tests.conftest import TEST_TELNYX_BASE_URL
from worker.api import CampaignsAPI, create_app
from worker.api.webhooks import WEBHOOK_MAX_BODY
from worker.runtime import Runtime

ASSISTANT = "a1"
EVENTS = f"/v2/ai/assistants/{ASSISTANT}/scheduled_events"
TEXML_URL = f"{TEST_TELNYX_BASE_URL}/texml/ai_calls/texml-app-1"
MESSAGES_URL = f"{TEST_TELNYX_BASE_URL}/messages"
CALLS_URL = f"{TEST_TELNYX_BASE_URL}/calls"
CALL_STATUS_PATH = "/webhooks/telnyx/call-status"
JSON_PATH = "/webhooks/telnyx"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
END_USER = "+15551234567"
AGENT = "+15553456789"


# --- harness -----------------------------------------------------------------------------------------------


@dataclass
class Dispatched:
    event_id: str
    attempt_id: uuid.UUID
    provider_id: str
    callback_path: str
    """Path and query of the callback URL the provider was given (where Telnyx would post)."""


@dataclass
class Harness:
    rt: Runtime
    clock: FrozenClock
    client: TestClient
    router: respx.MockRouter
    key: Ed25519PrivateKey
    sent: list[tuple[bytes, int]] = field(default_factory=list)

    # -- API --------------------------------------------------------------------------------------------

    def create(self, **overrides: Any) -> str:
        body: dict[str, Any] = {
            "telnyx_conversation_channel": "phone_call",
            "telnyx_end_user_target": END_USER,
            "telnyx_agent_target": AGENT,
            "scheduled_at_fixed_datetime": (self.clock.now() + timedelta(minutes=5)).isoformat(),
        }
        body.update(overrides)
        response = self.client.post(EVENTS, json=body)
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["status"] == "pending"
        return str(created["scheduled_event_id"])

    def event(self, event_id: str) -> dict[str, Any]:
        response = self.client.get(f"{EVENTS}/{event_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    # -- engine -----------------------------------------------------------------------------------------

    def claim(self) -> list[uuid.UUID]:
        with unit_of_work(self.rt.sessions) as s:
            claimed = lifecycle.claim_due_events(
                s, now=self.clock.now(), limit=100, lease=timedelta(minutes=2), providers=self.rt.providers
            )
        return [c.attempt_id for c in claimed]

    def dispatch(self, attempt_id: uuid.UUID) -> str:
        return dispatch_attempt(
            self.rt.sessions, attempt_id, providers=self.rt.providers, clock=self.clock, settings=self.rt.settings
        )

    def due(self, event_id: str) -> None:
        """Move the clock past the event's scheduled time."""
        due_at = parse_datetime(self.event(event_id)["scheduled_at_fixed_datetime"])
        assert due_at is not None
        self.clock.set(max(self.clock.now(), due_at + timedelta(seconds=1)))

    def claim_and_dispatch(self, event_id: str, route: respx.Route, callback_field: str) -> Dispatched:
        self.due(event_id)
        (attempt_id,) = self.claim()
        calls_before = route.call_count
        assert self.dispatch(attempt_id) == "sent"
        assert route.call_count == calls_before + 1
        sent = json.loads(route.calls.last.request.content)
        url = urlsplit(sent[callback_field])
        attempts = self.attempts(event_id)
        assert attempts[-1]["id"] == attempt_id
        provider_id = attempts[-1]["provider_id"]
        assert isinstance(provider_id, str) and provider_id
        return Dispatched(event_id, attempt_id, provider_id, f"{url.path}?{url.query}")

    def stored(self, event_id: str) -> dict[str, Any]:
        """The event's row, as the engine and the campaign export see it (deleted events included)."""
        with self.rt.sessions() as s:
            row = s.get_one(ScheduledEvent, uuid.UUID(event_id))
            return {c.key: getattr(row, c.key) for c in ScheduledEvent.__table__.columns}

    def attempts(self, event_id: str) -> list[dict[str, Any]]:
        with self.rt.sessions() as s:
            rows = s.scalars(
                select(CallAttempt)
                .where(CallAttempt.event_id == uuid.UUID(event_id))
                .order_by(CallAttempt.attempt_number)
            ).all()
            return [{c.key: getattr(row, c.key) for c in CallAttempt.__table__.columns} for row in rows]

    def receipts(self) -> list[tuple[bytes, uuid.UUID | None]]:
        with self.rt.sessions() as s:
            rows = s.execute(select(WebhookReceipt.body, WebhookReceipt.attempt_id)).all()
            return sorted(((bytes(r[0]), r[1]) for r in rows), key=lambda r: r[0])

    # -- webhooks ---------------------------------------------------------------------------------------

    def post(
        self,
        path: str,
        body: bytes,
        content_type: str,
        *,
        key: Ed25519PrivateKey | None = None,
        age: int = 0,
        signed_body: bytes | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        """Post ``body`` as Telnyx would: signature over the exact raw bytes and real Unix time."""
        headers = {"content-type": content_type, "user-agent": "telnyx-webhooks"}
        if signed:
            timestamp = str(int(time.time()) - age)
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(key or self.key, timestamp, body if signed_body is None else signed_body)
        response: httpx.Response = self.client.post(path, content=body, headers=headers)
        return response

    def texml(self, target: Dispatched, status: str, seq: int, **extra: str) -> bytes:
        """A form-encoded TeXML status callback body, fields as Telnyx sends them."""
        fields = {
            "AccountSid": "acct-1",
            "CallSid": target.provider_id,
            "CallControlId": target.provider_id,
            "CallSessionId": f"session-{target.attempt_id}",
            "ConnectionId": "texml-app-1",
            "From": AGENT,
            "To": END_USER,
            "CallStatus": status,
            "SequenceNumber": str(seq),
            "Timestamp": self.clock.now().isoformat(),
        }
        fields.update(extra)
        return urlencode(fields).encode()

    def send_texml(self, target: Dispatched, status: str, seq: int, **extra: str) -> httpx.Response:
        return self.post(target.callback_path, self.texml(target, status, seq, **extra), FORM)


@pytest.fixture
def make_harness(runtime: Runtime, settings: Settings, clock: FrozenClock) -> Iterator[Any]:
    opened: list[tuple[TestClient, httpx.Client]] = []
    key = Ed25519PrivateKey.generate()

    def build(**update: Any) -> Harness:
        new_settings = settings.model_copy(update={"telnyx_public_key": public_key_b64(key), **update})
        http = httpx.Client(
            base_url=settings.telnyx_base_url + "/", timeout=2.0, headers={"Authorization": "Bearer KEY_TEST"}
        )
        rt = Runtime(
            settings=new_settings,
            clock=runtime.clock,
            sessions=runtime.sessions,
            providers=providers_from_settings(new_settings, http) if update else runtime.providers,
        )
        client = TestClient(create_app(rt))
        opened.append((client, http))
        return Harness(rt=rt, clock=clock, client=client, router=router, key=key)

    with respx.mock(assert_all_called=False) as router:
        try:
            yield build
        finally:
            for client, http in opened:
                client.close()
                http.close()


@pytest.fixture
def h(make_harness: Any) -> Harness:
    harness: Harness = make_harness()
    return harness


def texml_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, json={"from": AGENT, "to": END_USER, "status": "queued", "call_sid": f"v3:{uuid.uuid4().hex}"}
    )


@pytest.fixture
def texml_route(h: Harness) -> respx.Route:
    return h.router.post(TEXML_URL).mock(side_effect=texml_ok)


@pytest.fixture
def call(h: Harness, texml_route: respx.Route) -> Dispatched:
    """A phone-call event with a retry budget, created through the API, claimed and dispatched."""
    event_id = h.create(max_retries_client_errors=2, retry_interval_secs=300)
    target = h.claim_and_dispatch(event_id, texml_route, "StatusCallback")
    assert (
        target.callback_path
        == f"{CALL_STATUS_PATH}?{urlencode({'attempt_id': signed_hint(h.rt.settings, target.attempt_id)})}"
    )
    assert target.provider_id.startswith("v3:")
    assert h.event(event_id)["status"] == "in_progress"
    return target


def assert_untouched(h: Harness, target: Dispatched, event_before: dict[str, Any], attempts_before: Any) -> None:
    assert h.event(target.event_id) == event_before
    assert h.attempts(target.event_id) == attempts_before


# --- signature verification --------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["both", "signature", "timestamp"])
def test_unsigned_callback_is_rejected_and_changes_nothing(h: Harness, call: Dispatched, missing: str) -> None:
    before, attempts_before = h.event(call.event_id), h.attempts(call.event_id)
    body = h.texml(call, "completed", 3, CallDuration="42")
    headers = {"content-type": FORM}
    timestamp = str(int(time.time()))
    if missing == "timestamp":
        headers[SIGNATURE_HEADER] = sign(h.key, timestamp, body)
    if missing == "signature":
        headers[TIMESTAMP_HEADER] = timestamp
    response = h.client.post(call.callback_path, content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "10009"
    assert_untouched(h, call, before, attempts_before)
    assert h.receipts() == []
    # The same body, signed, is then accepted: the 401 was about the signature and nothing else.
    assert h.post(call.callback_path, body, FORM).json() == {"result": "completed"}
    assert h.event(call.event_id)["status"] == "completed"


def test_tampered_body_is_rejected(h: Harness, call: Dispatched) -> None:
    before, attempts_before = h.event(call.event_id), h.attempts(call.event_id)
    genuine = h.texml(call, "busy", 3)
    forged = h.texml(call, "completed", 3, CallDuration="600")
    response = h.post(call.callback_path, forged, FORM, signed_body=genuine)
    assert response.status_code == 401
    assert "does not match" in response.json()["errors"][0]["detail"]
    assert_untouched(h, call, before, attempts_before)
    assert h.receipts() == []


def test_body_signed_with_another_key_is_rejected(h: Harness, call: Dispatched) -> None:
    before, attempts_before = h.event(call.event_id), h.attempts(call.event_id)
    response = h.post(call.callback_path, h.texml(call, "completed", 3), FORM, key=Ed25519PrivateKey.generate())
    assert response.status_code == 401
    assert_untouched(h, call, before, attempts_before)
    assert h.receipts() == []


def test_replay_older_than_the_tolerance_is_rejected(h: Harness, call: Dispatched) -> None:
    before, attempts_before = h.event(call.event_id), h.attempts(call.event_id)
    response = h.post(call.callback_path, h.texml(call, "completed", 3), FORM, age=301)
    assert response.status_code == 401
    assert "tolerance" in response.json()["errors"][0]["detail"]
    assert_untouched(h, call, before, attempts_before)
    assert h.receipts() == []


def test_timestamp_from_the_future_beyond_the_tolerance_is_rejected(h: Harness, call: Dispatched) -> None:
    before, attempts_before = h.event(call.event_id), h.attempts(call.event_id)
    # 302, not 301: the timestamp is whole seconds of the moment it is signed, so a second boundary passing before
    # the check made "301 s ahead" 300 s ahead (accepted) about once a run on a busy machine.
    response = h.post(call.callback_path, h.texml(call, "completed", 3), FORM, age=-302)
    assert response.status_code == 401
    assert_untouched(h, call, before, attempts_before)


@pytest.mark.parametrize("timestamp", ["9" * 400, "-" + "9" * 400, "1" + "0" * 19])
def test_an_absurd_timestamp_is_a_401_not_a_500(timestamp: str) -> None:
    """A timestamp of hundreds of digits overflowed the float comparison (a 500 from every receiver)."""
    key = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match="tolerance"):
        verify(
            key.public_key(),
            signature=sign(key, timestamp, b"x"),
            timestamp=timestamp,
            body=b"x",
            real_now=datetime.now(UTC),
        )


def test_callback_just_inside_the_tolerance_is_accepted(h: Harness, call: Dispatched) -> None:
    body = h.texml(call, "completed", 3, CallDuration="42")
    response = h.post(call.callback_path, body, FORM, age=299)
    assert response.status_code == 200
    assert response.json() == {"result": "completed"}
    event = h.event(call.event_id)
    assert (event["status"], event["call_status"], event["call_duration"]) == ("completed", "completed", 42)
    assert h.receipts() == [(body, call.attempt_id)]


def test_signed_callback_without_call_status_is_a_bad_request(h: Harness, call: Dispatched) -> None:
    before, attempts_before = h.event(call.event_id), h.attempts(call.event_id)
    body = urlencode({"CallSid": call.provider_id, "SequenceNumber": "3", "CallDuration": "42"}).encode()
    response = h.post(call.callback_path, body, FORM)
    assert response.status_code == 400
    assert "CallStatus" in response.json()["errors"][0]["detail"]
    assert_untouched(h, call, before, attempts_before)
    assert h.receipts() == []


def test_signed_json_webhook_that_is_not_json_is_a_bad_request(h: Harness, call: Dispatched) -> None:
    response = h.post(JSON_PATH, b"CallStatus=completed", JSON)
    assert response.status_code == 400
    assert h.receipts() == []


# --- idempotency and ordering ------------------------------------------------------------------------------


def test_duplicate_terminal_callback_changes_nothing(h: Harness, call: Dispatched) -> None:
    h.clock.advance(40)
    outcome_at = h.clock.now()
    body = h.texml(call, "busy", 3, CallDuration="0", HangupCause="user_busy")
    timestamp = str(int(time.time()))
    headers = {"content-type": FORM, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(h.key, timestamp, body)}

    first = h.client.post(call.callback_path, content=body, headers=headers)
    assert first.status_code == 200 and first.json() == {"result": "busy"}
    after_first = h.event(call.event_id)
    assert after_first["status"] == "pending"
    assert after_first["retry_count"] == 1
    assert parse_datetime(after_first["scheduled_at_fixed_datetime"]) == outcome_at + timedelta(seconds=300)
    attempts_after_first = h.attempts(call.event_id)

    h.clock.advance(5)  # the redelivery arrives a little later
    second = h.client.post(call.callback_path, content=body, headers=headers)
    assert second.status_code == 200
    assert second.json() == {"result": "duplicate"}
    assert h.event(call.event_id) == after_first
    assert h.attempts(call.event_id) == attempts_after_first
    assert h.receipts() == [(body, call.attempt_id)]


def test_stale_progress_after_the_terminal_status_changes_nothing(h: Harness, call: Dispatched) -> None:
    completed = h.texml(call, "completed", 3, CallDuration="42")
    assert h.post(call.callback_path, completed, FORM).json() == {"result": "completed"}
    settled, settled_attempts = h.event(call.event_id), h.attempts(call.event_id)

    ringing = h.texml(call, "ringing", 1)
    response = h.post(call.callback_path, ringing, FORM)
    assert response.status_code == 200
    assert response.json()["result"] not in ("progress", "completed", "duplicate")
    # A progress callback without a SequenceNumber cannot be ordered, and still must not reopen the attempt.
    unordered = urlencode({"CallSid": call.provider_id, "CallStatus": "in-progress"}).encode()
    assert h.post(call.callback_path, unordered, FORM).json()["result"] not in ("progress", "duplicate")

    event = h.event(call.event_id)
    assert event == settled
    assert (event["status"], event["call_status"], event["call_duration"]) == ("completed", "completed", 42)
    assert [a["call_status"] for a in event["call_attempts"]] == ["completed"]
    assert h.attempts(call.event_id) == settled_attempts
    assert settled_attempts[0]["call_status"] == "completed"
    assert h.receipts() == sorted((b, call.attempt_id) for b in (completed, ringing, unordered))


def test_progress_callbacks_out_of_order_keep_the_newest(h: Harness, call: Dispatched) -> None:
    assert h.send_texml(call, "ringing", 2).json() == {"result": "progress"}
    assert h.send_texml(call, "initiated", 1).json() == {"result": "stale"}
    (attempt,) = h.event(call.event_id)["call_attempts"]
    assert attempt["call_status"] == "ringing"
    assert h.attempts(call.event_id)[0]["last_sequence"] == 2
    assert h.event(call.event_id)["status"] == "in_progress"
    assert len(h.receipts()) == 2


def test_stale_terminal_callback_of_a_previous_attempt_changes_nothing(
    h: Harness, call: Dispatched, texml_route: respx.Route
) -> None:
    assert h.send_texml(call, "busy", 3).json() == {"result": "busy"}
    second = h.claim_and_dispatch(call.event_id, texml_route, "StatusCallback")
    assert second.attempt_id != call.attempt_id
    assert second.provider_id != call.provider_id
    before, attempts_before = h.event(call.event_id), h.attempts(call.event_id)
    assert (before["status"], before["retry_count"], before["call_status"]) == ("in_progress", 1, "busy")
    assert [a["attempt_number"] for a in attempts_before] == [1, 2]

    # A late, contradictory terminal callback for attempt 1 (posted to attempt 1's callback URL).
    late = h.texml(call, "completed", 5, CallDuration="17")
    response = h.post(call.callback_path, late, FORM)
    assert response.status_code == 200
    assert response.json()["result"] not in ("completed", "busy")
    assert h.event(call.event_id) == before
    assert h.attempts(call.event_id) == attempts_before

    # The current attempt still settles the event.
    assert h.send_texml(second, "completed", 3, CallDuration="9").json() == {"result": "completed"}
    event = h.event(call.event_id)
    assert (event["status"], event["retry_count"], event["call_duration"]) == ("completed", 1, 9)
    assert [a["call_status"] for a in event["call_attempts"]] == ["busy", "completed"]
    assert len(h.receipts()) == 3


def test_full_call_sequence_is_recorded_once_per_callback(h: Harness, call: Dispatched) -> None:
    statuses = [("initiated", 0), ("ringing", 1), ("in-progress", 2), ("completed", 3)]
    bodies = []
    for status, seq in statuses:
        extra = {"CallDuration": "42"} if status == "completed" else {}
        body = h.texml(call, status, seq, **extra)
        bodies.append(body)
        assert h.post(call.callback_path, body, FORM).status_code == 200
        assert h.post(call.callback_path, body, FORM).json() == {"result": "duplicate"}
    event = h.event(call.event_id)
    assert (event["status"], event["call_status"], event["call_duration"]) == ("completed", "completed", 42)
    assert event["call_attempts"][0]["telnyx_call_control_id"] == call.provider_id
    assert h.attempts(call.event_id)[0]["answered"] is True
    assert h.receipts() == sorted((b, call.attempt_id) for b in bodies)


# --- messaging (JSON) --------------------------------------------------------------------------------------


def message_webhook(event_type: str, webhook_id: str, message_id: str, status: str, attempt: int = 1) -> bytes:
    body = {
        "data": {
            "event_type": event_type,
            "id": webhook_id,
            "occurred_at": "2026-05-07T14:40:01.000+00:00",
            "payload": {
                "id": message_id,
                "record_type": "message",
                "direction": "outbound",
                "type": "SMS",
                "from": {"phone_number": AGENT},
                "to": [{"phone_number": END_USER, "status": status, "carrier": "T-Mobile USA"}],
                "text": "Reminder: tomorrow 10 AM",
            },
            "record_type": "event",
        },
        "meta": {"attempt": attempt, "delivered_to": "http://127.0.0.1:9/webhooks/telnyx"},
    }
    return json.dumps(body).encode()


def test_sms_delivery_receipts(h: Harness) -> None:
    route = h.router.post(MESSAGES_URL).mock(
        return_value=httpx.Response(
            200, json={"data": {"id": "msg-40315", "to": [{"phone_number": END_USER, "status": "queued"}]}}
        )
    )
    event_id = h.create(telnyx_conversation_channel="sms_chat", text="Reminder: tomorrow 10 AM")
    target = h.claim_and_dispatch(event_id, route, "webhook_url")
    assert target.provider_id == "msg-40315"
    assert (
        target.callback_path
        == f"{JSON_PATH}?{urlencode({'attempt_id': signed_hint(h.rt.settings, target.attempt_id)})}"
    )

    sent = message_webhook("message.sent", str(uuid.uuid4()), "msg-40315", "sent")
    assert h.post(target.callback_path, sent, JSON).json() == {"result": "progress"}
    assert h.event(event_id)["status"] == "in_progress"

    finalized_id = str(uuid.uuid4())
    finalized = message_webhook("message.finalized", finalized_id, "msg-40315", "delivered")
    assert h.post(target.callback_path, finalized, JSON).json() == {"result": "delivered"}
    done = h.event(event_id)
    assert (done["status"], done["errors"], done["retry_count"]) == ("completed", [], 0)
    attempts = h.attempts(event_id)
    assert [a["call_status"] for a in attempts] == ["delivered"]

    # Telnyx retries the same webhook (same data.id, next meta.attempt): a duplicate.
    replay = message_webhook("message.finalized", finalized_id, "msg-40315", "delivered", attempt=2)
    response = h.post(target.callback_path, replay, JSON)
    assert response.status_code == 200
    assert response.json() == {"result": "duplicate"}
    assert h.event(event_id) == done
    assert h.attempts(event_id) == attempts
    assert h.receipts() == sorted([(sent, target.attempt_id), (finalized, target.attempt_id)])


# --- Call Control (JSON) -----------------------------------------------------------------------------------


def call_control_webhook(event_type: str, attempt_id: uuid.UUID, **payload: Any) -> bytes:
    body = {
        "data": {
            "event_type": event_type,
            "id": str(uuid.uuid4()),
            "occurred_at": "2026-05-07T14:40:01.000+00:00",
            "payload": {
                "call_control_id": "v3:cc",
                "call_leg_id": "leg-1",
                "call_session_id": "session-1",
                "client_state": base64.b64encode(str(attempt_id).encode()).decode(),
                "connection_id": "cc-conn-1",
                "from": AGENT,
                "to": END_USER,
                **payload,
            },
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": "http://127.0.0.1:9/webhooks/telnyx"},
    }
    return json.dumps(body).encode()


@pytest.fixture
def cc(make_harness: Any) -> Harness:
    harness: Harness = make_harness(call_provider="call_control")
    return harness


@pytest.fixture
def cc_call(cc: Harness) -> Dispatched:
    route = cc.router.post(CALLS_URL).mock(
        return_value=httpx.Response(
            200,
            json={"data": {"call_control_id": "v3:cc", "call_leg_id": "leg-1", "is_alive": False}},
        )
    )
    event_id = cc.create(max_retries_client_errors=1, retry_interval_secs=120)
    target = cc.claim_and_dispatch(event_id, route, "webhook_url")
    dial = json.loads(route.calls.last.request.content)
    assert dial["command_id"] == str(target.attempt_id)
    assert base64.b64decode(dial["client_state"]).decode() == str(target.attempt_id)
    assert target.provider_id == "v3:cc"
    return target


def test_call_control_hangup_busy_schedules_a_retry(cc: Harness, cc_call: Dispatched) -> None:
    initiated = call_control_webhook("call.initiated", cc_call.attempt_id, state="bridging")
    assert cc.post(JSON_PATH, initiated, JSON).json() == {"result": "progress"}
    cc.clock.advance(20)
    hangup_at = cc.clock.now()
    hangup = call_control_webhook(
        "call.hangup", cc_call.attempt_id, hangup_cause="user_busy", hangup_source="callee", sip_hangup_cause="486"
    )
    response = cc.post(JSON_PATH, hangup, JSON)  # no attempt_id in the URL: matched by client_state
    assert response.status_code == 200
    assert response.json() == {"result": "busy"}
    event = cc.event(cc_call.event_id)
    assert (event["status"], event["retry_count"], event["call_status"]) == ("pending", 1, "busy")
    assert parse_datetime(event["scheduled_at_fixed_datetime"]) == hangup_at + timedelta(seconds=120)
    assert event["call_attempts"] == [
        {
            "attempt_number": 1,
            "attempted_at": event["call_attempts"][0]["attempted_at"],
            "call_status": "busy",
            "call_duration": None,
            "telnyx_call_control_id": "v3:cc",
            "outcome": "busy",
            "answered_by": None,
            "conversation_id": None,
        }
    ]
    assert cc.receipts() == sorted([(initiated, cc_call.attempt_id), (hangup, cc_call.attempt_id)])
    assert cc.post(JSON_PATH, hangup, JSON).json() == {"result": "duplicate"}
    assert cc.event(cc_call.event_id) == event


def test_call_control_hangup_after_answer_completes(cc: Harness, cc_call: Dispatched) -> None:
    answered = call_control_webhook("call.answered", cc_call.attempt_id)
    assert cc.post(JSON_PATH, answered, JSON).json() == {"result": "progress"}
    hangup = call_control_webhook(
        "call.hangup", cc_call.attempt_id, hangup_cause="normal_clearing", hangup_source="caller", call_duration=61
    )
    assert cc.post(JSON_PATH, hangup, JSON).json() == {"result": "completed"}
    event = cc.event(cc_call.event_id)
    assert (event["status"], event["call_status"], event["call_duration"], event["retry_count"]) == (
        "completed",
        "completed",
        61,
        0,
    )
    assert len(cc.receipts()) == 2


def test_call_control_hangup_before_the_dial_response_is_matched_by_client_state(cc: Harness) -> None:
    """Telnyx may call back before ``POST /calls`` has answered: only ``client_state`` names the attempt then."""
    replies: list[httpx.Response] = []

    def dial(request: httpx.Request) -> httpx.Response:
        attempt_id = uuid.UUID(json.loads(request.content)["command_id"])
        assert cc.attempts(event_id)[0]["provider_id"] is None  # not recorded yet
        hangup = call_control_webhook("call.hangup", attempt_id, hangup_cause="user_busy", hangup_source="callee")
        replies.append(cc.post(JSON_PATH, hangup, JSON))
        return httpx.Response(200, json={"data": {"call_control_id": "v3:cc", "is_alive": False}})

    route = cc.router.post(CALLS_URL).mock(side_effect=dial)
    event_id = cc.create(max_retries_client_errors=1, retry_interval_secs=120)
    target = cc.claim_and_dispatch(event_id, route, "webhook_url")
    assert [r.json() for r in replies] == [{"result": "busy"}]
    event = cc.event(event_id)
    assert (event["status"], event["retry_count"], event["call_status"]) == ("pending", 1, "busy")
    (attempt,) = cc.attempts(event_id)
    assert (attempt["state"], attempt["call_status"], attempt["provider_id"]) == ("finished", "busy", "v3:cc")
    assert [r[1] for r in cc.receipts()] == [target.attempt_id]


def test_texml_terminal_before_the_dial_response_is_matched_by_the_callback_url(h: Harness) -> None:
    replies: list[httpx.Response] = []

    def dial(request: httpx.Request) -> httpx.Response:
        url = urlsplit(json.loads(request.content)["StatusCallback"])
        attempt_id = uuid.UUID(parse_qs(url.query)["attempt_id"][0].partition(".")[0])
        early = Dispatched(event_id, attempt_id, "v3:early", f"{url.path}?{url.query}")
        replies.append(h.send_texml(early, "completed", 3, CallDuration="7"))
        return httpx.Response(200, json={"status": "queued", "call_sid": "v3:early"})

    route = h.router.post(TEXML_URL).mock(side_effect=dial)
    event_id = h.create()
    h.claim_and_dispatch(event_id, route, "StatusCallback")
    assert [r.json() for r in replies] == [{"result": "completed"}]
    event = h.event(event_id)
    assert (event["status"], event["call_duration"]) == ("completed", 7)
    assert event["call_attempts"][0]["telnyx_call_control_id"] == "v3:early"
    assert h.attempts(event_id)[0]["state"] == "finished"


def test_delete_while_ringing_then_busy_stops_the_retries(h: Harness, call: Dispatched) -> None:
    assert h.client.delete(f"{EVENTS}/{call.event_id}").status_code == 204
    assert h.client.get(f"{EVENTS}/{call.event_id}").status_code == 404  # gone from the Telnyx API at once
    assert h.stored(call.event_id)["status"] == "in_progress"  # while its call goes on
    assert h.send_texml(call, "busy", 3).json() == {"result": "busy"}
    event = h.stored(call.event_id)
    assert (event["status"], event["retry_count"]) == ("canceled", 0)
    h.clock.advance(86400)
    assert h.claim() == []


def test_concurrent_redeliveries_are_applied_once(h: Harness, call: Dispatched) -> None:
    body = h.texml(call, "no-answer", 3, CallDuration="0")
    timestamp = str(int(time.time()))
    headers = {"content-type": FORM, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(h.key, timestamp, body)}
    barrier = threading.Barrier(6)

    def deliver(_: int) -> dict[str, Any]:
        barrier.wait(timeout=10)
        response = h.client.post(call.callback_path, content=body, headers=headers)
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = sorted(r["result"] for r in pool.map(deliver, range(6)))
    assert results == ["duplicate"] * 5 + ["no-answer"]
    event = h.event(call.event_id)
    assert (event["status"], event["retry_count"]) == ("pending", 1)
    assert [a["call_status"] for a in event["call_attempts"]] == ["no-answer"]
    assert h.receipts() == [(body, call.attempt_id)]


def test_call_control_hangup_before_answered_webhook_still_completes(cc: Harness, cc_call: Dispatched) -> None:
    answered = call_control_webhook("call.answered", cc_call.attempt_id)
    hangup = call_control_webhook(
        "call.hangup", cc_call.attempt_id, hangup_cause="normal_clearing", hangup_source="caller", call_duration=61
    )
    assert cc.post(JSON_PATH, hangup, JSON).status_code == 200
    assert cc.post(JSON_PATH, answered, JSON).status_code == 200
    event = cc.event(cc_call.event_id)
    assert (event["status"], event["call_status"], event["retry_count"]) == ("completed", "completed", 0)


# --- the receiver's front door ------------------------------------------------------------------------------


def test_callback_over_the_size_limit_is_refused_before_it_is_verified(h: Harness, call: Dispatched) -> None:
    before, attempts_before = h.event(call.event_id), h.attempts(call.event_id)
    padded = h.texml(call, "completed", 3, Padding="x" * WEBHOOK_MAX_BODY)
    response = h.post(call.callback_path, padded, FORM)
    assert response.status_code == 413
    assert response.json()["errors"][0]["title"] == "Callback too large"

    def chunks() -> Iterator[bytes]:  # no content-length: the limit is enforced while reading
        for start in range(0, len(padded), 65536):
            yield padded[start : start + 65536]

    timestamp = str(int(time.time()))
    streamed = h.client.post(
        call.callback_path,
        content=chunks(),
        headers={"content-type": FORM, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(h.key, timestamp, padded)},
    )
    assert streamed.status_code == 413
    assert_untouched(h, call, before, attempts_before)
    assert h.receipts() == []
    # A callback of ordinary size still goes through.
    assert h.send_texml(call, "completed", 3, CallDuration="42").json() == {"result": "completed"}


def _answers(h: Harness, call: Dispatched) -> list[tuple[int, Any]]:
    """What the receiver answers to one request of each kind that leaves the call untouched."""
    body = h.texml(call, "completed", 3)
    sent = [
        h.post(call.callback_path, body, FORM, signed=False),
        h.post(call.callback_path, body, FORM, key=Ed25519PrivateKey.generate()),
        h.post(call.callback_path, body, FORM, age=301),
        h.post(call.callback_path, urlencode({"CallSid": call.provider_id}).encode(), FORM),
        h.post(JSON_PATH, b"CallStatus=completed", JSON),
        h.post(JSON_PATH, b"[1, 2]", JSON),
        h.post(CALL_STATUS_PATH, h.texml(call, "completed", 3, Padding="x" * WEBHOOK_MAX_BODY), FORM),
    ]
    return [(r.status_code, r.json()) for r in sent]


def test_the_fast_path_answers_as_the_fastapi_routes_do(h: Harness, call: Dispatched) -> None:
    app = h.client.app
    assert isinstance(app, CampaignsAPI) and app.webhook_fast_path is not None
    fast = _answers(h, call)
    assert [status for status, _ in fast] == [401, 401, 401, 400, 400, 400, 413]
    app.webhook_fast_path = None  # every request now goes through FastAPI's routing
    assert _answers(h, call) == fast
    assert h.receipts() == []
    response = h.send_texml(call, "completed", 3, CallDuration="42")
    assert (response.status_code, response.json()) == (200, {"result": "completed"})
    assert h.event(call.event_id)["status"] == "completed"


def test_a_callback_that_cannot_be_stored_is_a_json_500_and_the_next_one_is_applied(
    h: Harness, call: Dispatched, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> list[str]:
        raise RuntimeError("database went away")

    commits = h.client.app.state.webhooks.commits
    working = commits._apply
    monkeypatch.setattr(commits, "_apply", broken)
    response = h.send_texml(call, "completed", 3, CallDuration="42")
    assert response.status_code == 500
    assert response.json()["errors"][0]["detail"] == "the callback was not applied"
    assert h.receipts() == []
    monkeypatch.setattr(commits, "_apply", working)  # Telnyx sends it again; it is applied once
    assert h.send_texml(call, "completed", 3, CallDuration="42").json() == {"result": "completed"}
    assert h.event(call.event_id)["status"] == "completed"


def test_other_methods_and_paths_still_go_through_fastapi(h: Harness) -> None:
    assert h.client.get(CALL_STATUS_PATH).status_code == 405
    assert h.client.post(CALL_STATUS_PATH + "/x", content=b"").status_code == 404
    assert "/webhooks/telnyx/call-status" in h.client.get("/openapi.json").json()["paths"]


# --- the attempt hint in the callback URL (issue #19 item 5) ---------------------------------------------------


@pytest.mark.parametrize("hint", ["bare", "signed"])
def test_a_genuine_callback_posted_with_another_attempts_hint_does_not_apply_to_it(
    h: Harness, texml_route: respx.Route, hint: str
) -> None:
    """Event B's signed "completed", posted with ``?attempt_id=<A's attempt>``, completed A; B's own delivery was
    then a duplicate. Now a callback whose call id differs from the attempt's never applies to it."""
    a = h.claim_and_dispatch(h.create(), texml_route, "StatusCallback")
    b = h.claim_and_dispatch(h.create(telnyx_end_user_target="+15551234568"), texml_route, "StatusCallback")
    value = str(a.attempt_id) if hint == "bare" else signed_hint(h.rt.settings, a.attempt_id)
    forged = f"{CALL_STATUS_PATH}?{urlencode({'attempt_id': value})}"
    body = h.texml(b, "completed", 3, CallDuration="42")
    assert h.post(forged, body, FORM).json() == {"result": "completed"}  # B's result, applied to B by its call id
    assert h.stored(a.event_id)["status"] == "in_progress"  # A untouched
    assert h.attempts(a.event_id)[0]["state"] != "finished"
    assert h.stored(b.event_id)["status"] == "completed"
    assert h.post(b.callback_path, body, FORM).json() == {"result": "duplicate"}  # B's own delivery: seen already
    assert [r[1] for r in h.receipts()] == [b.attempt_id]


def test_an_unsigned_hint_names_an_attempt_only_when_the_call_ids_agree(h: Harness) -> None:
    """Calls placed before the upgrade carry a bare ``?attempt_id=``: still matched where the stored call id agrees;
    before a call id is stored, only a signed hint names the attempt."""
    early: list[httpx.Response] = []

    def dial(request: httpx.Request) -> httpx.Response:
        attempt_id = uuid.UUID(
            parse_qs(urlsplit(json.loads(request.content)["StatusCallback"]).query)["attempt_id"][0].partition(".")[0]
        )
        bare = Dispatched(event_id, attempt_id, "v3:old", f"{CALL_STATUS_PATH}?attempt_id={attempt_id}")
        early.append(h.send_texml(bare, "ringing", 1))  # no call id stored yet, and no MAC: not believed
        return httpx.Response(200, json={"status": "queued", "call_sid": "v3:old"})

    route = h.router.post(TEXML_URL).mock(side_effect=dial)
    event_id = h.create()
    target = h.claim_and_dispatch(event_id, route, "StatusCallback")
    assert [r.json() for r in early] == [{"result": "unmatched"}]
    bare = Dispatched(event_id, target.attempt_id, "v3:old", f"{CALL_STATUS_PATH}?attempt_id={target.attempt_id}")
    assert h.send_texml(bare, "completed", 3, CallDuration="9").json() == {"result": "completed"}  # ids agree
    assert h.stored(event_id)["status"] == "completed"


def test_a_hint_with_a_wrong_mac_counts_as_unsigned() -> None:
    from campaigns.telephony.hints import hint_key, read_hint

    settings = Settings(callback_hint_secret="s3cret")
    attempt_id = uuid.uuid4()
    good = signed_hint(settings, attempt_id)
    assert read_hint(good, hint_key(settings)) == (attempt_id, True)
    assert read_hint(good, hint_key(Settings(callback_hint_secret="other"))) == (attempt_id, False)
    assert read_hint(f"{attempt_id}.AAAAAAAAAAAAAAAAAAAAAA", hint_key(settings)) == (attempt_id, False)
    assert read_hint(str(attempt_id), hint_key(settings)) == (attempt_id, False)
    assert read_hint("not-a-uuid.x", hint_key(settings)) == (None, False)
