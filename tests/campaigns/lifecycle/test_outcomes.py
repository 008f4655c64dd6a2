"""Call and SMS outcomes and the retry arithmetic (campaigns/lifecycle/outcomes.py)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import respx

from campaigns import telephony, webhooks
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from tests.campaigns.lifecycle.harness import (
    MESSAGES,
    TEXML,
    claim,
    create,
    dispatch,
    load,
    run_call,
    texml_callback,
    texml_ok,
)
from tests.factories import call_body, sms_body
from worker.runtime import Runtime


@respx.mock
def test_zero_retries_means_one_attempt(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=0))
    run_call(runtime, clock, event_id, "busy")
    event = load(runtime.sessions, event_id)
    assert event.status == "failed"
    assert [a.call_status for a in event.attempts] == ["busy"]
    assert any("retry budget exhausted" in e for e in event.errors)
    clock.advance(3600)
    assert claim(runtime) == []


@respx.mock
def test_four_client_errors_exhaust_a_budget_of_three(runtime: Runtime, clock: FrozenClock) -> None:
    route = respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=3, retry_interval_secs=300))
    for outcome in ("busy", "no-answer", "failed", "canceled"):
        run_call(runtime, clock, event_id, outcome)
    event = load(runtime.sessions, event_id)
    assert event.status == "failed"
    assert event.retry_count == 3
    assert [a.attempt_number for a in event.attempts] == [1, 2, 3, 4]
    assert [a.call_status for a in event.attempts] == ["busy", "no-answer", "failed", "canceled"]
    assert event.errors == ["client-error retry budget exhausted after 4 attempt(s); last call status: canceled"]
    assert route.call_count == 4
    clock.advance(86400)
    assert claim(runtime) == []


@respx.mock
def test_retry_time_is_measured_from_the_outcome(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=1, retry_interval_secs=600))
    original_due = load(runtime.sessions, event_id).scheduled_at_fixed_datetime
    clock.set(original_due)
    (attempt_id,) = claim(runtime)
    dispatch(runtime, attempt_id)
    clock.advance(95)  # the call rang for a while
    outcome_at = clock.now()
    texml_callback(runtime, attempt_id, "no-answer", 2)
    event = load(runtime.sessions, event_id)
    assert event.status == "pending"
    assert event.retry_count == 1
    assert event.scheduled_at_fixed_datetime == outcome_at + timedelta(seconds=600)
    assert event.scheduled_at_fixed_datetime != original_due + timedelta(seconds=600)
    clock.set(outcome_at + timedelta(seconds=599))
    assert claim(runtime) == []
    clock.advance(1)
    assert len(claim(runtime)) == 1


@respx.mock
def test_success_on_first_attempt(runtime: Runtime, clock: FrozenClock) -> None:
    route = respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(
        runtime,
        call_body(clock.now(), max_retries_client_errors=2, retry_interval_secs=60, dynamic_variables={"name": "Ana"}),
    )
    run_call(runtime, clock, event_id, "completed")
    event = load(runtime.sessions, event_id)
    assert (event.status, event.call_status, event.call_duration, event.retry_count) == (
        "completed",
        "completed",
        42,
        0,
    )
    assert len(event.attempts) == 1
    sent = route.calls.last.request
    body = httpx.Response(200, content=sent.content).json()
    assert body["To"] == "+15551234567" and body["From"] == "+15553456789"
    assert body["AIAssistantId"] == "assistant-1"
    assert body["AIAssistantDynamicVariables"] == {"name": "Ana"}
    assert body["StatusCallback"].startswith("http://127.0.0.1:9/webhooks/telnyx/call-status?attempt_id=")
    assert sent.headers["authorization"] == "Bearer KEY_TEST"


@pytest.mark.parametrize(("final", "status"), [("delivered", "completed"), ("delivery_failed", "failed")])
@respx.mock
def test_sms_outcomes(runtime: Runtime, clock: FrozenClock, final: str, status: str) -> None:
    route = respx.post(MESSAGES).mock(return_value=httpx.Response(200, json={"data": {"id": "msg-1", "to": []}}))
    event_id = create(runtime, sms_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "sent"
    assert route.calls.last.request.headers["idempotency-key"] == str(attempt_id)
    for kind, st in (("message.sent", "sent"), ("message.finalized", final)):
        body = {"data": {"event_type": kind, "id": f"{kind}-1", "payload": {"id": "msg-1", "to": [{"status": st}]}}}
        cb = telephony.parse_json_event(body, None)
        with unit_of_work(runtime.sessions) as s:
            webhooks.record_and_apply(s, cb, b"{}", now=clock.now())
    event = load(runtime.sessions, event_id)
    assert event.status == status
    assert event.retry_count == 0
    assert (event.errors == []) == (status == "completed")
