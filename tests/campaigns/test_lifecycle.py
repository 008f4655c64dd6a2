"""The lifecycle on real PostgreSQL, provider faked with respx, time driven by the frozen clock."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from campaigns import lifecycle, webhooks
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.dispatch import dispatch_attempt
from campaigns.models import CallAttempt, ScheduledEvent
from tests.conftest import TEST_TELNYX_BASE_URL
from tests.factories import call_body, make_event, sms_body
from worker.runtime import Runtime

TEXML = f"{TEST_TELNYX_BASE_URL}/texml/ai_calls/texml-app-1"
MESSAGES = f"{TEST_TELNYX_BASE_URL}/messages"


def create(rt: Runtime, body: dict[str, object]) -> uuid.UUID:
    with unit_of_work(rt.sessions) as s:
        return make_event(s, rt.clock.now(), body).id


def claim(rt: Runtime) -> list[uuid.UUID]:
    with unit_of_work(rt.sessions) as s:
        claimed = lifecycle.claim_due_events(
            s, now=rt.clock.now(), limit=100, lease=timedelta(minutes=2), providers=rt.providers
        )
    return [c.attempt_id for c in claimed]


def dispatch(rt: Runtime, attempt_id: uuid.UUID) -> str:
    return dispatch_attempt(rt.sessions, attempt_id, providers=rt.providers, clock=rt.clock, settings=rt.settings)


def texml_callback(rt: Runtime, attempt_id: uuid.UUID, status: str, seq: int, duration: str = "0") -> str:
    form = {"CallSid": f"v3:{attempt_id}", "CallStatus": status, "SequenceNumber": str(seq), "CallDuration": duration}
    cb = webhooks.parse_texml_status(form, str(attempt_id))
    with unit_of_work(rt.sessions) as s:
        return webhooks.record_and_apply(s, cb, repr(form).encode(), now=rt.clock.now())


def load(sessions: sessionmaker[Session], event_id: uuid.UUID) -> ScheduledEvent:
    with sessions() as s:
        event = s.get(ScheduledEvent, event_id)
        assert event is not None
        _ = event.attempts
        return event


def texml_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"from": "+1", "to": "+1", "status": "queued", "call_sid": f"v3:{uuid.uuid4()}"})


def run_call(rt: Runtime, clock: FrozenClock, event_id: uuid.UUID, outcome: str) -> uuid.UUID:
    """Advance to the event's due time, claim it, dispatch it and deliver ``outcome``."""
    event = load(rt.sessions, event_id)
    clock.set(max(clock.now(), event.scheduled_at_fixed_datetime))
    (attempt_id,) = claim(rt)
    assert dispatch(rt, attempt_id) == "sent"
    clock.advance(30)
    texml_callback(rt, attempt_id, "initiated", 0)
    texml_callback(rt, attempt_id, outcome, 3, duration="42" if outcome == "completed" else "0")
    return attempt_id


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
        cb = webhooks.parse_json_event(body, None)
        with unit_of_work(runtime.sessions) as s:
            webhooks.record_and_apply(s, cb, b"{}", now=clock.now())
    event = load(runtime.sessions, event_id)
    assert event.status == status
    assert event.retry_count == 0
    assert (event.errors == []) == (status == "completed")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(429, json={"errors": [{"code": "90103", "title": "Too many dials per second"}]}),
        httpx.Response(429, json={"errors": [{"code": "10011", "title": "Too many requests"}]}),
        httpx.Response(503, text="unavailable"),
    ],
)
@respx.mock
def test_refusals_consume_no_budget(runtime: Runtime, clock: FrozenClock, response: httpx.Response) -> None:
    route = respx.post(TEXML).mock(side_effect=[response, httpx.Response(200, json={"call_sid": "v3:x"})])
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=1, retry_interval_secs=60))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "refused"
    event = load(runtime.sessions, event_id)
    assert (event.status, event.retry_count, event.attempts) == ("pending", 0, [])
    assert event.scheduled_at_fixed_datetime == clock.now() + timedelta(seconds=runtime.settings.transient_backoff_secs)
    assert event.deferred_reason and "provider refused" in event.deferred_reason
    assert claim(runtime) == []  # not before the back-off
    clock.advance(runtime.settings.transient_backoff_secs)
    (second,) = claim(runtime)
    assert dispatch(runtime, second) == "sent"
    event = load(runtime.sessions, event_id)
    assert [a.attempt_number for a in event.attempts] == [1]
    assert route.call_count == 2


@respx.mock
def test_connection_refused_is_transient(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=httpx.ConnectError("refused"))
    event_id = create(runtime, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "refused"
    assert load(runtime.sessions, event_id).status == "pending"


@respx.mock
def test_provider_4xx_fails_the_event_with_its_error(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(
        return_value=httpx.Response(
            422, json={"errors": [{"code": "10016", "title": "Invalid destination", "detail": "To is not dialable"}]}
        )
    )
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=3, retry_interval_secs=60))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "rejected"
    event = load(runtime.sessions, event_id)
    assert event.status == "failed"
    assert event.retry_count == 0
    assert len(event.errors) == 1 and "10016" in event.errors[0] and "To is not dialable" in event.errors[0]


@respx.mock
def test_timeout_after_sending_is_never_resent(runtime: Runtime, clock: FrozenClock) -> None:
    route = respx.post(TEXML).mock(side_effect=httpx.ReadTimeout("slow"))
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=3, retry_interval_secs=60))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "unknown"
    assert dispatch(runtime, attempt_id) == "skipped"  # a redelivered task does nothing
    clock.advance(86400)
    assert claim(runtime) == []
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert report.failed_unknown == 1
    event = load(runtime.sessions, event_id)
    assert event.status == "failed"
    assert "outcome unknown" in event.errors[-1]
    assert [a.call_status for a in event.attempts] == ["unknown"]
    clock.advance(86400)
    assert claim(runtime) == []
    assert route.call_count == 1


@respx.mock
def test_late_callback_after_timeout_settles_the_event(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=httpx.ReadTimeout("slow"))
    event_id = create(runtime, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    dispatch(runtime, attempt_id)
    texml_callback(runtime, attempt_id, "completed", 3, "12")
    assert load(runtime.sessions, event_id).status == "completed"


@pytest.mark.parametrize("status", [500, 502, 504])
@respx.mock
def test_a_server_error_after_sending_is_never_resent(runtime: Runtime, clock: FrozenClock, status: int) -> None:
    """A 5xx other than 503 came from a provider (or its gateway) that had the request: it may have placed the
    call, so it is an unknown outcome, never a refusal to try again (that dialed the person twice)."""
    route = respx.post(TEXML).mock(
        return_value=httpx.Response(status, json={"errors": [{"code": "10007", "title": "Unexpected error"}]})
    )
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=3, retry_interval_secs=60))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "unknown"
    event = load(runtime.sessions, event_id)
    (attempt,) = event.attempts
    assert (event.status, event.retry_count, attempt.state) == ("in_progress", 0, "unknown")
    assert attempt.error and f"({status}, code 10007)" in attempt.error
    clock.advance(86400)
    assert claim(runtime) == []
    lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert load(runtime.sessions, event_id).status == "failed"
    assert claim(runtime) == []
    assert route.call_count == 1


def _alive(call_sid: str) -> None:
    respx.get(f"{TEST_TELNYX_BASE_URL}/calls/{call_sid}").mock(
        return_value=httpx.Response(200, json={"data": {"call_control_id": call_sid, "is_alive": True}})
    )


@respx.mock
def test_a_call_whose_request_timed_out_keeps_its_real_outcome(runtime: Runtime, clock: FrozenClock) -> None:
    """The POST timed out but the call was placed and lasts longer than the dispatch lease: the event waits for
    it (the call lease), its progress makes it a call the reconciler asks about, and its outcome is recorded.
    Before, the reconciler failed it closed two minutes in and the real outcome arrived as a "duplicate"."""
    respx.post(TEXML).mock(side_effect=httpx.ReadTimeout("slow"))
    event_id = create(runtime, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "unknown"
    call_lease = timedelta(seconds=runtime.settings.call_lease_secs)
    assert load(runtime.sessions, event_id).lease_expires_at == clock.now() + call_lease
    clock.advance(20)
    assert texml_callback(runtime, attempt_id, "initiated", 0) == "progress"
    assert texml_callback(runtime, attempt_id, "in-progress", 2) == "progress"
    (attempt,) = load(runtime.sessions, event_id).attempts
    assert (attempt.state, attempt.provider_id, attempt.answered) == ("sent", f"v3:{attempt_id}", True)

    clock.advance(300)  # past the dispatch lease: nothing to settle yet
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=call_lease
    )
    assert report == lifecycle.ReconcileReport()
    _alive(f"v3:{attempt_id}")
    clock.advance(call_lease.total_seconds())  # a long call: the provider is asked and says it is up
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=call_lease
    )
    assert (report.extended, report.failed_unknown) == (1, 0)

    assert texml_callback(runtime, attempt_id, "completed", 3, duration="4000") == "completed"
    event = load(runtime.sessions, event_id)
    assert (event.status, event.call_status, event.call_duration, event.errors) == ("completed", "completed", 4000, [])


@respx.mock
def test_a_call_whose_worker_died_after_sending_is_asked_about(runtime: Runtime, clock: FrozenClock) -> None:
    """Killed after the request went out: the call's first callback proves it exists, so when the short lease
    ends the reconciler asks the provider instead of failing a live call closed."""
    respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    with unit_of_work(runtime.sessions) as s:  # what the worker did before it died
        assert lifecycle.begin_dispatch(s, attempt_id, now=clock.now(), dispatch_lease=timedelta(minutes=2))
    assert texml_callback(runtime, attempt_id, "ringing", 1) == "progress"
    _alive(f"v3:{attempt_id}")
    clock.advance(600)
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert (report.extended, report.failed_unknown) == (1, 0)
    assert dispatch(runtime, attempt_id) == "skipped"  # the redelivered task sends nothing
    assert texml_callback(runtime, attempt_id, "no-answer", 3) == "no-answer"
    assert load(runtime.sessions, event_id).status == "failed"


@respx.mock
def test_a_message_whose_request_timed_out_completes_on_its_receipt(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(MESSAGES).mock(side_effect=httpx.ReadTimeout("slow"))
    event_id = create(runtime, sms_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "unknown"
    body = {
        "data": {"event_type": "message.sent", "id": "sent-1", "payload": {"id": "msg-1", "to": [{"status": "sent"}]}}
    }
    with unit_of_work(runtime.sessions) as s:
        webhooks.record_and_apply(s, webhooks.parse_json_event(body, str(attempt_id)), b"{}", now=clock.now())
    clock.advance(7200)  # no final receipt (some carriers give none): settled as sent, like any accepted message
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert (report.completed_sms, report.failed_unknown) == (1, 0)
    event = load(runtime.sessions, event_id)
    assert (event.status, event.attempts[0].provider_id) == ("completed", "msg-1")


@respx.mock
def test_worker_killed_after_claim_never_dials_twice(runtime: Runtime, clock: FrozenClock) -> None:
    """Claimed, then the worker died before sending: the reconciler withdraws the attempt, nothing was dialled."""
    route = respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now()))
    clock.advance(600)
    (lost_attempt,) = claim(runtime)
    clock.advance(300)  # lease (2 min) expired
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert report.withdrawn == 1
    assert dispatch(runtime, lost_attempt) == "skipped"  # the redelivered task finds nothing to do
    (fresh,) = claim(runtime)
    assert dispatch(runtime, fresh) == "sent"
    texml_callback(runtime, fresh, "completed", 3)
    event = load(runtime.sessions, event_id)
    assert event.status == "completed" and [a.attempt_number for a in event.attempts] == [1]
    assert route.call_count == 1


@respx.mock
def test_worker_killed_while_sending_fails_closed(runtime: Runtime, clock: FrozenClock) -> None:
    """Killed after committing ``sending`` (the request may be out): never re-sent, failed closed."""
    route = respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=2, retry_interval_secs=60))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    with unit_of_work(runtime.sessions) as s:  # what the worker did before it died
        assert lifecycle.begin_dispatch(s, attempt_id, now=clock.now(), dispatch_lease=timedelta(minutes=2))
    assert dispatch(runtime, attempt_id) == "skipped"  # redelivery
    clock.advance(600)
    lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    event = load(runtime.sessions, event_id)
    assert event.status == "failed" and "not re-dialled" in event.errors[-1]
    assert route.call_count == 0


def test_reconciler_extends_a_live_call(runtime: Runtime, clock: FrozenClock) -> None:
    with respx.mock:
        respx.post(TEXML).mock(return_value=httpx.Response(200, json={"call_sid": "v3:live"}))
        respx.get(f"{TEST_TELNYX_BASE_URL}/calls/v3:live").mock(
            return_value=httpx.Response(200, json={"data": {"call_control_id": "v3:live", "is_alive": True}})
        )
        event_id = create(runtime, call_body(clock.now()))
        clock.advance(600)
        (attempt_id,) = claim(runtime)
        dispatch(runtime, attempt_id)
        clock.advance(7200)
        report = lifecycle.reconcile_expired_leases(
            runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
        )
    assert report.extended == 1
    event = load(runtime.sessions, event_id)
    assert event.status == "in_progress" and event.lease_expires_at == clock.now() + timedelta(hours=1)


def _sent_call_with_expired_lease(runtime: Runtime, clock: FrozenClock, call_sid: str) -> tuple[uuid.UUID, uuid.UUID]:
    respx.post(TEXML).mock(return_value=httpx.Response(200, json={"call_sid": call_sid}))
    event_id = create(runtime, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "sent"
    clock.advance(7200)
    return event_id, attempt_id


@respx.mock
def test_reconciler_fails_closed_when_the_provider_says_the_call_is_over(runtime: Runtime, clock: FrozenClock) -> None:
    event_id, _ = _sent_call_with_expired_lease(runtime, clock, "v3:gone")
    respx.get(f"{TEST_TELNYX_BASE_URL}/calls/v3:gone").mock(
        return_value=httpx.Response(200, json={"data": {"call_control_id": "v3:gone", "is_alive": False}})
    )
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert (report.failed_unknown, report.extended) == (1, 0)
    event = load(runtime.sessions, event_id)
    assert event.status == "failed" and "no terminal status arrived" in event.errors[-1]
    assert [a.call_status for a in event.attempts] == ["unknown"]


@respx.mock
def test_reconciler_holds_no_lock_while_asking_the_provider(runtime: Runtime, clock: FrozenClock) -> None:
    """The event is free while the provider is asked, so its webhook is applied meanwhile (not queued behind the
    question), and the reconciler then leaves the settled event alone instead of failing it closed."""
    event_id, attempt_id = _sent_call_with_expired_lease(runtime, clock, "v3:ending")
    asked: list[str] = []

    def provider_answers(request: httpx.Request) -> httpx.Response:
        with runtime.sessions() as other:  # another connection, as a webhook handler would use
            other.execute(text("SET LOCAL lock_timeout = '2s'"))
            other.execute(text("SELECT 1 FROM scheduled_events WHERE id = :id FOR UPDATE NOWAIT"), {"id": event_id})
            other.rollback()
        asked.append(texml_callback(runtime, attempt_id, "completed", 5, "30"))  # the hangup arrives meanwhile
        return httpx.Response(200, json={"data": {"call_control_id": "v3:ending", "is_alive": False}})

    respx.get(f"{TEST_TELNYX_BASE_URL}/calls/v3:ending").mock(side_effect=provider_answers)
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert asked == ["completed"]
    assert (report.failed_unknown, report.extended) == (0, 0)
    event = load(runtime.sessions, event_id)
    assert event.status == "completed" and [a.call_status for a in event.attempts] == ["completed"]


def test_concurrent_reconcilers_ask_about_a_call_once(runtime: Runtime, clock: FrozenClock) -> None:
    """The first pass extends the lease before asking, so a second pass started meanwhile skips the call."""
    with respx.mock:
        event_id, _ = _sent_call_with_expired_lease(runtime, clock, "v3:slow")
        inner: list[lifecycle.ReconcileReport] = []

        def provider_answers(request: httpx.Request) -> httpx.Response:
            if not inner:
                inner.append(
                    lifecycle.reconcile_expired_leases(
                        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
                    )
                )
            return httpx.Response(200, json={"data": {"call_control_id": "v3:slow", "is_alive": True}})

        route = respx.get(f"{TEST_TELNYX_BASE_URL}/calls/v3:slow").mock(side_effect=provider_answers)
        outer = lifecycle.reconcile_expired_leases(
            runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
        )
    assert route.call_count == 1
    assert inner[0] == lifecycle.ReconcileReport()
    assert outer.extended == 1
    assert load(runtime.sessions, event_id).status == "in_progress"


@respx.mock
def test_reconciler_asks_about_many_calls_at_once(runtime: Runtime, clock: FrozenClock) -> None:
    """Each question waits for the other to arrive: asked one after another, the first would never be answered."""
    sids = ("v3:first", "v3:second")
    for sid in sids:
        _sent_call_with_expired_lease(runtime, clock, sid)
        clock.advance(-7200)
    clock.advance(7200)
    both_asking = threading.Barrier(len(sids), timeout=10)

    def provider_answers(request: httpx.Request) -> httpx.Response:
        both_asking.wait()
        return httpx.Response(200, json={"data": {"is_alive": True}})

    for sid in sids:
        respx.get(f"{TEST_TELNYX_BASE_URL}/calls/{sid}").mock(side_effect=provider_answers)
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert (report.extended, report.failed_unknown) == (2, 0)


def test_claim_uses_the_partial_index(session: Session) -> None:
    session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(
        row[0]
        for row in session.execute(
            text(
                "EXPLAIN SELECT id FROM scheduled_events WHERE status = 'pending' "
                "AND scheduled_at_fixed_datetime <= now() ORDER BY scheduled_at_fixed_datetime LIMIT 10"
            )
        )
    )
    assert "ix_scheduled_events_due_pending" in plan


def test_attempt_numbers_are_unique_per_event(session: Session, clock: FrozenClock) -> None:
    from sqlalchemy.exc import IntegrityError

    event = make_event(session, clock.now())
    for _ in range(2):
        session.add(CallAttempt(event_id=event.id, attempt_number=1, provider="texml", claimed_at=clock.now()))
    with pytest.raises(IntegrityError):
        session.flush()


@respx.mock
def test_window_defers_the_claim_and_moves_a_late_retry_to_the_morning(runtime: Runtime, clock: FrozenClock) -> None:
    from datetime import UTC, datetime

    respx.post(TEXML).mock(side_effect=texml_ok)
    clock.set(datetime(2025, 7, 15, 10, 0, tzinfo=UTC))  # 06:00 in New York
    body = call_body(clock.now(), max_retries_client_errors=1, retry_interval_secs=3600, ruleset="us")
    body["telnyx_end_user_target"] = "+12125550101"
    event_id = create(runtime, body)
    clock.advance(600)
    assert claim(runtime) == []  # outside the window: deferred, no attempt
    event = load(runtime.sessions, event_id)
    assert event.status == "pending" and event.retry_count == 0
    assert event.scheduled_at_fixed_datetime == datetime(2025, 7, 15, 12, 0, tzinfo=UTC)  # 08:00 EDT
    assert event.deferred_reason and "calling window" in event.deferred_reason
    clock.set(datetime(2025, 7, 16, 0, 30, tzinfo=UTC))  # 20:30 EDT, still open
    (attempt_id,) = claim(runtime)
    dispatch(runtime, attempt_id)
    texml_callback(runtime, attempt_id, "busy", 2)  # retry at 21:30 would be after closing time
    event = load(runtime.sessions, event_id)
    assert event.status == "pending"
    assert event.scheduled_at_fixed_datetime == datetime(2025, 7, 16, 12, 0, tzinfo=UTC)  # next morning, 08:00 EDT


def test_pacing_limits_concurrency_and_rate_without_consuming_attempts(runtime: Runtime, clock: FrozenClock) -> None:
    from campaigns import campaign as campaign_service
    from campaigns import importing as importer

    settings = campaign_service.validate_settings(
        {"name": "paced", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none",
         "max_concurrent_calls": 3},
        now=clock.now(),
    )  # fmt: skip
    data = "phone\n" + "".join(f"+1212555{n:04d}\n" for n in range(10))
    with unit_of_work(runtime.sessions) as s:
        campaign = campaign_service.create_campaign(s, settings, now=clock.now())
        importer.load_call_list(s, campaign, __import__("io").BytesIO(data.encode()), now=clock.now())
    clock.advance(1)
    assert len(claim(runtime)) == 3
    assert claim(runtime) == []  # three calls are live: the rest wait, with no attempt created
    with runtime.sessions() as s:
        waiting = s.scalars(select(ScheduledEvent).where(ScheduledEvent.status == "pending")).all()
        assert len(waiting) == 7
        assert all(
            e.deferred_reason == "pacing: 3 concurrent calls in progress" and e.retry_count == 0 for e in waiting
        )
