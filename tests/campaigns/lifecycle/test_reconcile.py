"""Expired leases settled without ever dialling twice (campaigns/lifecycle/reconcile.py)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy import text

from campaigns import lifecycle, telephony, webhooks
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.telephony.hints import hint_key, signed_hint
from tests.campaigns.lifecycle.harness import (
    MESSAGES,
    TEXML,
    claim,
    create,
    dispatch,
    load,
    texml_callback,
    texml_ok,
)
from tests.conftest import TEST_TELNYX_BASE_URL
from tests.factories import call_body, sms_body
from worker.runtime import Runtime


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
        assert lifecycle.begin_dispatch(
            s, attempt_id, provider="texml", now=clock.now(), dispatch_lease=timedelta(minutes=2)
        )
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
        # Posted to the URL the message was sent with: the signed hint names the attempt whose id is unknown.
        callback = telephony.parse_json_event(
            body, signed_hint(runtime.settings, attempt_id), hint_key(runtime.settings)
        )
        webhooks.record_and_apply(s, callback, b"{}", now=clock.now())
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
        assert lifecycle.begin_dispatch(
            s, attempt_id, provider="texml", now=clock.now(), dispatch_lease=timedelta(minutes=2)
        )
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


def _reconcile(runtime: Runtime, clock: FrozenClock) -> lifecycle.ReconcileReport:
    return lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )


@pytest.mark.parametrize(
    "cannot_tell",
    [
        httpx.Response(404, json={"errors": [{"code": "10005", "title": "Resource not found"}]}),
        httpx.Response(500, json={"errors": [{"code": "10007", "title": "Unexpected error"}]}),
        httpx.Response(503),
        httpx.ReadTimeout("slow"),
    ],
    ids=["404", "500", "503", "timeout"],
)
@respx.mock
def test_a_status_query_that_cannot_tell_extends_the_lease_up_to_the_time_limit(
    runtime: Runtime, clock: FrozenClock, cannot_tell: httpx.Response | Exception
) -> None:
    """An answered call (``in-progress`` callback) whose status query answers 404, 5xx or times out is not over:
    before, the reconciler read "cannot tell" as "not alive" and failed it. Now its lease is extended, never past
    the longest the call can last (Telnyx's default time limit, 4 h, plus ringing); past that it is closed as
    unknown, as before."""
    respx.post(TEXML).mock(return_value=httpx.Response(200, json={"call_sid": "v3:quiet"}))
    event_id = create(runtime, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "sent"
    dialled_at = clock.now()
    deadline = dialled_at + lifecycle.reconcile.LONGEST_CALL
    assert texml_callback(runtime, attempt_id, "in-progress", 2) == "progress"
    route = respx.get(f"{TEST_TELNYX_BASE_URL}/calls/v3:quiet")
    route.mock(side_effect=[cannot_tell] * 10)

    clock.advance(3601)  # the first lease ended: asked, cannot tell, extended by the call lease
    report = _reconcile(runtime, clock)
    assert (report.extended, report.undetermined, report.failed_unknown) == (1, 1, 0)
    event = load(runtime.sessions, event_id)
    assert (event.status, event.lease_expires_at) == ("in_progress", clock.now() + timedelta(hours=1))

    clock.set(deadline - timedelta(minutes=10))  # near the limit: the lease stops at the limit
    report = _reconcile(runtime, clock)
    assert (report.extended, report.failed_unknown) == (1, 0)
    assert load(runtime.sessions, event_id).lease_expires_at == deadline

    clock.set(deadline + timedelta(seconds=1))  # past the limit: closed as unknown, never re-dialled
    report = _reconcile(runtime, clock)
    assert (report.extended, report.failed_unknown) == (0, 1)
    event = load(runtime.sessions, event_id)
    assert event.status == "failed" and "could not tell within the call's time limit" in event.errors[-1]
    assert [a.call_status for a in event.attempts] == ["unknown"]
    assert route.call_count == 3


@respx.mock
def test_a_late_callback_after_a_query_that_could_not_tell_settles_the_call(
    runtime: Runtime, clock: FrozenClock
) -> None:
    event_id, attempt_id = _sent_call_with_expired_lease(runtime, clock, "v3:late")
    respx.get(f"{TEST_TELNYX_BASE_URL}/calls/v3:late").mock(return_value=httpx.Response(404))
    assert _reconcile(runtime, clock).undetermined == 1
    assert texml_callback(runtime, attempt_id, "completed", 5, "300") == "completed"
    event = load(runtime.sessions, event_id)
    assert (event.status, event.call_duration, event.errors) == ("completed", 300, [])


def _over(call_sid: str) -> None:
    respx.get(f"{TEST_TELNYX_BASE_URL}/calls/{call_sid}").mock(
        return_value=httpx.Response(200, json={"data": {"call_control_id": call_sid, "is_alive": False}})
    )


def _reconcile_with_grace(runtime: Runtime, clock: FrozenClock, grace_secs: float) -> lifecycle.ReconcileReport:
    return lifecycle.reconcile_expired_leases(
        runtime.sessions,
        now=clock.now(),
        providers=runtime.providers,
        call_lease=timedelta(hours=1),
        callback_grace=timedelta(seconds=grace_secs),
    )


@respx.mock
def test_a_call_over_at_the_provider_waits_for_its_callback_and_a_late_one_completes_it(
    runtime: Runtime, clock: FrozenClock
) -> None:
    """Issue 21: the call ended at the provider, but its terminal callback is still queued (the engine's webhook
    path behind): the event is not failed closed; it waits, and the callback completes it with no error."""
    event_id, attempt_id = _sent_call_with_expired_lease(runtime, clock, "v3:queued")
    _over("v3:queued")
    report = _reconcile_with_grace(runtime, clock, 600)
    assert (report.failed_unknown, report.awaiting_callback, report.extended) == (0, 1, 1)
    event = load(runtime.sessions, event_id)
    assert event.status == "in_progress" and event.lease_expires_at == clock.now() + timedelta(seconds=600)
    assert [a.call_status for a in event.attempts] == [None]
    clock.advance(300)
    assert _reconcile_with_grace(runtime, clock, 600).failed_unknown == 0  # the lease runs to the grace's end
    assert texml_callback(runtime, attempt_id, "completed", 5, "42") == "completed"
    event = load(runtime.sessions, event_id)
    assert (event.status, event.call_duration, event.errors) == ("completed", 42, [])


@respx.mock
def test_a_call_over_at_the_provider_fails_closed_when_the_grace_runs_out(runtime: Runtime, clock: FrozenClock) -> None:
    """The grace counts from the first time the provider said the call was over, not from each look."""
    event_id, _ = _sent_call_with_expired_lease(runtime, clock, "v3:never")
    _over("v3:never")
    assert _reconcile_with_grace(runtime, clock, 600).awaiting_callback == 1
    first_said = clock.now()
    clock.advance(599)
    assert _reconcile_with_grace(runtime, clock, 600).failed_unknown == 0  # lease not expired yet: nothing asked
    clock.advance(2)
    report = _reconcile_with_grace(runtime, clock, 600)
    assert (report.failed_unknown, report.awaiting_callback) == (1, 0)
    event = load(runtime.sessions, event_id)
    assert event.status == "failed"
    assert "the provider said the call was over, but no terminal status arrived within 600 s" in event.errors[-1]
    assert [(a.call_status, a.provider_ended_at) for a in event.attempts] == [("unknown", first_said)]
