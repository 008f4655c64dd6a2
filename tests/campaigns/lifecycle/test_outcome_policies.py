"""Issue 17: every call attempt's outcome, answering-machine detection, per-outcome retry budgets,
``voicemail_action``, channel-limited attempts that spend no budget, and late truth after an unknown outcome
(campaigns/lifecycle/outcomes.py, transitions.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import respx
from prometheus_client import REGISTRY

from campaigns import telephony, webhooks
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.lifecycle import transitions
from campaigns.lifecycle.holds import RateBackoff
from campaigns.lifecycle.locking import lock_attempt
from campaigns.models import ProviderBackoff
from campaigns.telephony.hints import hint_key, signed_hint
from tests.campaigns.lifecycle.harness import TEXML, claim, create, dispatch, load, texml_ok
from tests.factories import call_body
from worker.runtime import Runtime


def send(
    rt: Runtime, attempt_id: uuid.UUID, status: str, seq: int, backoff: RateBackoff | None = None, **extra: str
) -> str:
    form = {"CallSid": f"v3:{attempt_id}", "CallStatus": status, "SequenceNumber": str(seq), **extra}
    cb = telephony.parse_texml_status(form, str(attempt_id))
    with unit_of_work(rt.sessions) as s:
        return webhooks.record_and_apply(s, cb, repr(form).encode(), now=rt.clock.now(), backoff=backoff)


def start(rt: Runtime, clock: FrozenClock, event_id: uuid.UUID) -> uuid.UUID:
    event = load(rt.sessions, event_id)
    clock.set(max(clock.now(), event.scheduled_at_fixed_datetime))
    (attempt_id,) = claim(rt)
    assert dispatch(rt, attempt_id) == "sent"
    clock.advance(30)
    return attempt_id


def answered_by_machine(rt: Runtime, clock: FrozenClock, event_id: uuid.UUID) -> uuid.UUID:
    attempt_id = start(rt, clock, event_id)
    send(rt, attempt_id, "in-progress", 2, AnsweredBy="machine_end_beep")
    send(rt, attempt_id, "completed", 3, CallDuration="20")
    return attempt_id


def finish(rt: Runtime, clock: FrozenClock, event_id: uuid.UUID, status: str, **extra: str) -> uuid.UUID:
    attempt_id = start(rt, clock, event_id)
    send(rt, attempt_id, status, 3, **extra)
    return attempt_id


@respx.mock
def test_a_voicemail_is_retried_then_a_human_completes(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    body = call_body(clock.now(), max_retries_client_errors=1, retry_interval_secs=600)
    event_id = create(runtime, {**body, "answering_machine_detection": "detect"})
    answered_by_machine(runtime, clock, event_id)
    event = load(runtime.sessions, event_id)
    assert event.status == "pending" and event.retry_count == 1 and event.outcome_retries == {"voicemail": 1}
    second = start(runtime, clock, event_id)
    send(runtime, second, "in-progress", 2, AnsweredBy="human")
    send(runtime, second, "completed", 3, CallDuration="60")
    event = load(runtime.sessions, event_id)
    assert event.status == "completed"
    assert [(a.attempt_number, a.call_status, a.outcome, a.answered_by) for a in event.attempts] == [
        (1, "completed", "voicemail", "machine"),
        (2, "completed", "answered", "human"),
    ]


@respx.mock
def test_voicemail_action_complete_counts_a_voicemail_as_reached(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    body = call_body(clock.now(), max_retries_client_errors=2, retry_interval_secs=600)
    event_id = create(runtime, {**body, "answering_machine_detection": "detect", "voicemail_action": "complete"})
    answered_by_machine(runtime, clock, event_id)
    event = load(runtime.sessions, event_id)
    assert event.status == "completed"
    assert [(a.outcome, a.answered_by) for a in event.attempts] == [("voicemail", "machine")]


@respx.mock
def test_async_amd_callback_is_recorded_before_the_terminal_status(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, {**call_body(clock.now()), "answering_machine_detection": "detect_premium"})
    attempt_id = start(runtime, clock, event_id)
    form = {"CallSid": f"v3:{attempt_id}", "AnsweredBy": "screening"}  # AsyncAmdStatusCallback: no CallStatus
    with unit_of_work(runtime.sessions) as s:
        cb = telephony.parse_texml_status(form, str(attempt_id))
        assert webhooks.record_and_apply(s, cb, b"amd", now=clock.now()) == "detection: screening"
    send(runtime, attempt_id, "completed", 3)
    event = load(runtime.sessions, event_id)
    assert event.status == "failed"  # no retries configured: a screened call spends the Telnyx budget (0)
    assert [(a.outcome, a.answered_by) for a in event.attempts] == [("screened", "screening")]
    assert event.errors == [
        "client-error retry budget exhausted after 1 attempt(s); last call status: completed; outcome: screened"
    ]


@respx.mock
def test_a_detection_result_after_the_hangup_reclassifies_the_call(runtime: Runtime, clock: FrozenClock) -> None:
    """Out of order: the terminal status first (taken for an answer, the event completed), then AMD says machine.
    Under ``voicemail_action=retry`` the voicemail is retried, as it would have been in order."""
    respx.post(TEXML).mock(side_effect=texml_ok)
    body = {**call_body(clock.now(), max_retries_client_errors=1, retry_interval_secs=600)}
    event_id = create(runtime, {**body, "answering_machine_detection": "detect"})
    attempt_id = start(runtime, clock, event_id)
    send(runtime, attempt_id, "completed", 3, CallDuration="20")
    assert load(runtime.sessions, event_id).status == "completed"
    form = {"CallSid": f"v3:{attempt_id}", "AnsweredBy": "machine_end_beep"}
    with unit_of_work(runtime.sessions) as s:
        cb = telephony.parse_texml_status(form, str(attempt_id))
        result = webhooks.record_and_apply(s, cb, b"amd-late", now=clock.now())
    assert result == "detection after the end: voicemail, event pending"
    event = load(runtime.sessions, event_id)
    assert (event.status, event.retry_count, event.outcome_retries) == ("pending", 1, {"voicemail": 1})
    assert [(a.outcome, a.answered_by) for a in event.attempts] == [("voicemail", "machine")]


@respx.mock
def test_a_late_voicemail_result_leaves_a_completed_event_when_voicemail_completes(
    runtime: Runtime, clock: FrozenClock
) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    body = {
        **call_body(clock.now(), max_retries_client_errors=1, retry_interval_secs=600),
        "voicemail_action": "complete",
    }
    event_id = create(runtime, {**body, "answering_machine_detection": "detect"})
    attempt_id = start(runtime, clock, event_id)
    send(runtime, attempt_id, "completed", 3, CallDuration="20")
    form = {"CallSid": f"v3:{attempt_id}", "AnsweredBy": "machine_end_beep"}
    with unit_of_work(runtime.sessions) as s:
        cb = telephony.parse_texml_status(form, str(attempt_id))
        assert webhooks.record_and_apply(s, cb, b"amd-late", now=clock.now()) == "detection after the end: voicemail"
    event = load(runtime.sessions, event_id)
    assert event.status == "completed" and [a.outcome for a in event.attempts] == ["voicemail"]


@respx.mock
def test_each_outcome_spends_its_own_budget(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    policy = {"busy": {"max_retries": 1, "retry_interval_secs": 60}}
    body = call_body(clock.now(), max_retries_client_errors=1, retry_interval_secs=3600)
    event_id = create(runtime, {**body, "retry_policy": policy})
    finish(runtime, clock, event_id, "busy")
    event = load(runtime.sessions, event_id)
    assert event.status == "pending"
    assert event.scheduled_at_fixed_datetime == clock.now() + timedelta(seconds=60)  # the busy interval
    finish(runtime, clock, event_id, "no-answer")  # the Telnyx budget (1), not busy's
    event = load(runtime.sessions, event_id)
    assert event.status == "pending" and event.outcome_retries == {"busy": 1, "no-answer": 1}
    assert event.scheduled_at_fixed_datetime == clock.now() + timedelta(seconds=3600)
    finish(runtime, clock, event_id, "busy")
    event = load(runtime.sessions, event_id)
    assert event.status == "failed" and event.retry_count == 2
    assert [a.outcome for a in event.attempts] == ["busy", "no-answer", "busy"]
    assert event.errors == [
        "retry budget for outcome busy exhausted after 3 attempt(s) (retry_policy busy: max_retries 1); "
        "last call status: busy"
    ]


@respx.mock
def test_busy_twice_with_a_busy_budget_of_one_fails_naming_busy(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    policy = {"busy": {"max_retries": 1, "retry_interval_secs": 60}}
    event_id = create(runtime, {**call_body(clock.now()), "retry_policy": policy})
    finish(runtime, clock, event_id, "busy")
    finish(runtime, clock, event_id, "busy")
    event = load(runtime.sessions, event_id)
    assert event.status == "failed"
    assert [a.attempt_number for a in event.attempts] == [1, 2]
    assert "outcome busy" in event.errors[-1]
    clock.advance(86400)
    assert claim(runtime) == []


@respx.mock
def test_channel_limited_attempts_spend_no_budget(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now()))  # no retries at all
    limit = {"ErrorCode": "D1", "ErrorMessage": "User channel limit exceeded", "SipResponseCode": "403"}
    finish(runtime, clock, event_id, "failed", **limit)
    event = load(runtime.sessions, event_id)
    assert event.status == "pending" and event.retry_count == 0 and event.free_attempts == 1
    assert event.scheduled_at_fixed_datetime == clock.now() + timedelta(seconds=30)
    assert event.deferred_reason is not None and "channel limit" in event.deferred_reason
    finish(runtime, clock, event_id, "failed", **limit)
    event = load(runtime.sessions, event_id)
    assert event.scheduled_at_fixed_datetime == clock.now() + timedelta(seconds=60)  # backing off
    finish(runtime, clock, event_id, "completed")
    event = load(runtime.sessions, event_id)
    assert event.status == "completed" and event.retry_count == 0 and event.free_attempts == 2
    assert [(a.attempt_number, a.outcome) for a in event.attempts] == [
        (1, "channel_limited"),
        (2, "channel_limited"),
        (3, "answered"),
    ]


@respx.mock
def test_a_channel_limit_refusal_backs_the_whole_call_provider_off(runtime: Runtime, clock: FrozenClock) -> None:
    """The D1 403 arrives as a callback, not as a 429 at dispatch: it still means "too many at once" for the
    account, so every call waits out the shared backoff, not only the refused one (issue 17)."""
    respx.post(TEXML).mock(side_effect=texml_ok)
    refused = create(runtime, call_body(clock.now()))
    other = create(runtime, call_body(clock.now() + timedelta(minutes=1), telnyx_end_user_target="+15551234568"))
    attempt_id = start(runtime, clock, refused)
    other_due = load(runtime.sessions, other).scheduled_at_fixed_datetime
    backoff = RateBackoff.for_calls(runtime.settings, runtime.clock)
    limit = {"ErrorCode": "D1", "ErrorMessage": "User channel limit exceeded", "SipResponseCode": "403"}
    clock.set(other_due - backoff.base / 2)
    send(runtime, attempt_id, "failed", 3, backoff, **limit)
    with runtime.sessions() as s:
        row = s.get(ProviderBackoff, runtime.providers.calls.name)
        assert row is not None and row.level == 1 and row.not_before == clock.now() + backoff.base
    clock.set(other_due)
    assert claim(runtime) == []  # the other call, due now, waits for the backoff
    event = load(runtime.sessions, other)
    assert event.status == "pending" and event.deferred_reason is not None and "backing off" in event.deferred_reason
    clock.advance(backoff.base.total_seconds())
    assert len(claim(runtime)) == 1
    with unit_of_work(runtime.sessions) as s:  # more refusals right after the wait: callbacks lag their dials, so
        for _ in range(5):  # a refusal learnt from one never doubles the wait (it would grow to the cap)
            clock.advance(backoff.base.total_seconds())
            assert backoff.note(s, now=clock.now()) == clock.now() + backoff.base


@respx.mock
def test_a_recipient_failure_is_not_a_channel_limit(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now()))
    finish(runtime, clock, event_id, "failed", ErrorCode="D10", SipResponseCode="403", HangupCause="call_rejected")
    event = load(runtime.sessions, event_id)
    assert event.status == "failed" and [a.outcome for a in event.attempts] == ["failed"]


def fail_closed(rt: Runtime, attempt_id: uuid.UUID) -> None:
    """What the reconciler does when a lease ends with no terminal status and the provider cannot tell."""
    with unit_of_work(rt.sessions) as s:
        locked = lock_attempt(s, attempt_id)
        assert locked is not None
        transitions.fail_unknown(*locked, rt.clock.now(), "no terminal status arrived before the lease expired")


@respx.mock
def test_late_truth_completes_an_event_failed_closed(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now()))
    attempt_id = start(runtime, clock, event_id)
    fail_closed(runtime, attempt_id)
    assert load(runtime.sessions, event_id).status == "failed"
    reopened = {"channel": "phone_call", "status": "failed"}
    before = REGISTRY.get_sample_value("campaigns_events_reopened_total", reopened) or 0.0
    assert send(runtime, attempt_id, "completed", 3, CallDuration="42") == "late truth: completed"
    # it was counted failed; now it is counted completed too, and reopened once so the net stays true
    assert REGISTRY.get_sample_value("campaigns_events_reopened_total", reopened) == before + 1
    event = load(runtime.sessions, event_id)
    assert event.status == "completed" and event.errors == [] and event.call_status == "completed"
    assert [(a.call_status, a.outcome) for a in event.attempts] == [("completed", "answered")]
    assert event.attempts[0].error is None  # the reconciler's "outcome unknown" no longer stands


@respx.mock
def test_late_truth_retries_within_budget(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=1, retry_interval_secs=300))
    attempt_id = start(runtime, clock, event_id)
    fail_closed(runtime, attempt_id)
    send(runtime, attempt_id, "busy", 3)
    event = load(runtime.sessions, event_id)
    assert event.status == "pending" and event.retry_count == 1 and event.errors == []


@respx.mock
def test_late_truth_after_a_later_attempt_changes_nothing(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now()))
    attempt_id = start(runtime, clock, event_id)
    send(runtime, attempt_id, "completed", 3)
    assert send(runtime, attempt_id, "busy", 4) == "duplicate"
    assert load(runtime.sessions, event_id).status == "completed"


def test_call_control_detection_and_conversation_events_are_kept(runtime: Runtime, clock: FrozenClock) -> None:
    event_id = create(runtime, {**call_body(clock.now()), "answering_machine_detection": "detect"})
    clock.set(load(runtime.sessions, event_id).scheduled_at_fixed_datetime)
    (attempt_id,) = claim(runtime)

    def post(event_type: str, payload: dict[str, object]) -> str:
        body = {"data": {"event_type": event_type, "id": str(uuid.uuid4()), "payload": payload}}
        cb = telephony.parse_json_event(body, signed_hint(runtime.settings, attempt_id), hint_key(runtime.settings))
        with unit_of_work(runtime.sessions) as s:
            return webhooks.record_and_apply(s, cb, repr(body).encode(), now=clock.now())

    post("call.answered", {"call_control_id": "v3:cc"})
    assert post("call.machine.detection.ended", {"call_control_id": "v3:cc", "result": "machine"}) == (
        "detection: machine"
    )
    post("call.hangup", {"call_control_id": "v3:cc", "hangup_cause": "normal_clearing"})
    post("call.conversation.ended", {"call_control_id": "v3:cc", "conversation_id": "conv-1"})
    insights = {"insight_group_id": "g", "results": [{"insight_id": "i", "result": "Left a voicemail."}]}
    post("call.conversation_insights.generated", {"call_control_id": "v3:cc", **insights})
    event = load(runtime.sessions, event_id)
    assert event.conversation_id == "conv-1"
    (attempt,) = event.attempts
    assert (attempt.outcome, attempt.answered_by, attempt.conversation_id) == ("voicemail", "machine", "conv-1")
    assert attempt.insights == insights
