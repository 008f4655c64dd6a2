"""The batch dispatch path (what the Celery task runs): each attempt sent at most once, every exception settled."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from campaigns import lifecycle, suppression
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.dispatch import dispatch_attempts
from campaigns.lifecycle.dispatch import _RECORD_DISPATCHED
from campaigns.models import CallAttempt
from campaigns.telephony import DispatchResult
from tests.campaigns.lifecycle.harness import TEXML, claim, create, load, texml_callback
from tests.factories import call_body
from worker.runtime import Runtime


def target(i: int) -> str:
    return f"+1555123450{i}"


def provider(request: httpx.Request) -> httpx.Response:
    to = json.loads(request.content)["To"]
    if to == target(5):
        return httpx.Response(429, json={"errors": [{"code": "90103", "title": "Too many dials per second"}]})
    if to == target(6):
        return httpx.Response(422, json={"errors": [{"code": "10015", "title": "Invalid To number"}]})
    return httpx.Response(200, json={"from": "+1", "to": to, "status": "queued", "call_sid": f"v3:{to}"})


def sent_attempt_ids(route: respx.Route) -> list[str]:
    return [
        str(httpx.URL(json.loads(call.request.content)["StatusCallback"]).params["attempt_id"]).partition(".")[0]
        for call in route.calls
    ]


@respx.mock
def test_a_batch_sends_each_attempt_once_and_settles_every_exception(runtime: Runtime, clock: FrozenClock) -> None:
    route = respx.post(TEXML).mock(side_effect=provider)
    events = {i: create(runtime, call_body(clock.now(), telnyx_end_user_target=target(i))) for i in range(1, 7)}
    clock.advance(600)
    attempts = claim(runtime)
    assert len(attempts) == 6
    with unit_of_work(runtime.sessions) as s:
        s.execute(text("UPDATE scheduled_events SET cancel_requested = true WHERE id = :id"), {"id": events[2]})
        suppression.add(s, target(3), now=clock.now())
    stranger = uuid.uuid4()  # an attempt withdrawn before the task ran

    def run() -> list[str]:
        return dispatch_attempts(
            runtime.sessions, [*attempts, stranger], providers=runtime.providers, clock=clock, settings=runtime.settings
        )

    assert sorted(run()) == ["refused", "rejected", "sent", "sent"]
    sent = sent_attempt_ids(route)
    assert len(sent) == len(set(sent)) == 4  # 1, 4, 5, 6: never the canceled or the suppressed one

    call_lease = timedelta(seconds=runtime.settings.call_lease_secs)
    for i in (1, 4):
        event = load(runtime.sessions, events[i])
        (attempt,) = event.attempts
        assert (event.status, attempt.state, attempt.provider_id) == ("in_progress", "sent", f"v3:{target(i)}")
        assert attempt.attempted_at == event.dispatched_at == clock.now()
        assert event.lease_expires_at == clock.now() + call_lease
        assert str(attempt.id) in sent
    canceled, suppressed, refused, rejected = (load(runtime.sessions, events[i]) for i in (2, 3, 5, 6))
    assert (canceled.status, canceled.attempts) == ("canceled", [])
    assert (suppressed.status, suppressed.attempts) == ("failed", [])
    assert "do-not-contact" in suppressed.errors[0]
    assert (refused.status, refused.attempts, refused.retry_count) == ("pending", [], 0)  # budget intact
    assert (rejected.status, rejected.attempts[0].state) == ("failed", "finished")
    assert "10015" in (rejected.attempts[0].error or "")

    # The broker redelivers the same batch: nothing is sent again and nothing changes.
    assert run() == []
    assert route.call_count == 4
    assert load(runtime.sessions, events[1]).attempts[0].state == "sent"


@respx.mock
def test_a_callback_that_beats_the_record_keeps_its_outcome(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=provider)
    event_id = create(runtime, call_body(clock.now(), telnyx_end_user_target=target(1)))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    with unit_of_work(runtime.sessions) as s:
        request = lifecycle.begin_dispatch(
            s, attempt_id, provider="texml", now=clock.now(), dispatch_lease=timedelta(minutes=2)
        )
        assert request is not None
        assert request.attempt_id == attempt_id
    # The call ends and its callbacks arrive before the worker records the provider's answer.
    texml_callback(runtime, attempt_id, "completed", 3, duration="12")
    with unit_of_work(runtime.sessions) as s:
        lifecycle.record_dispatched_many(
            s,
            [(attempt_id, DispatchResult("texml", "v3:late", "queued"))],
            now=clock.now(),
            call_lease=timedelta(hours=1),
        )
    event = load(runtime.sessions, event_id)
    (attempt,) = event.attempts
    assert (event.status, attempt.state, attempt.provider_id) == ("completed", "finished", f"v3:{attempt_id}")
    assert event.lease_expires_at is None
    with runtime.sessions() as s:
        row = s.execute(select(CallAttempt.call_status, CallAttempt.last_status).where(CallAttempt.id == attempt_id))
        assert tuple(row.one()) == ("completed", None)  # the late record did not write its "queued" over it


def test_each_sending_thread_keeps_its_own_client(runtime: Runtime) -> None:
    """A client shared by the 64 sending threads spent half a worker's CPU in its pool's bookkeeping."""
    import threading

    from campaigns.telephony import TelnyxTexml, shared_client

    provider = TelnyxTexml(runtime.settings)
    mine = provider.client
    assert provider.client is mine is shared_client(runtime.settings)  # kept, not one per request
    theirs: list[object] = []
    thread = threading.Thread(target=lambda: theirs.append(provider.client))
    thread.start()
    thread.join()
    assert theirs and theirs[0] is not mine
    injected = httpx.Client()
    assert TelnyxTexml(runtime.settings, injected).client is injected  # tests and embedders pass their own
    injected.close()


def test_recording_a_batch_does_not_walk_every_call_in_progress(session: Session) -> None:
    """Statistics taken before a burst is claimed say no event is in progress; the record statement must still
    find its events by id, not by walking the index of in-progress leases (which held every claimed event and
    made a 100,000-event burst slow down as it went)."""
    session.execute(
        text(
            """
            INSERT INTO scheduled_events (id, assistant_id, telnyx_conversation_channel, telnyx_end_user_target,
                telnyx_agent_target, scheduled_at_fixed_datetime, status, conversation_metadata, dynamic_variables,
                created_at, updated_at, errors, max_retries_client_errors, retry_count, cancel_requested, ruleset)
            SELECT gen_random_uuid(), 'plan', 'phone_call', '+1212' || lpad((2000000 + i)::text, 7, '0'),
                '+15553456789', now(), 'pending', '{}', '{}', now(), now(), '[]', 0, 0, false, 'none'
            FROM generate_series(1, 5000) AS i
            """
        )
    )
    session.execute(text("ANALYZE scheduled_events"))  # every event pending
    session.execute(
        text("UPDATE scheduled_events SET status = 'in_progress', lease_expires_at = now() WHERE assistant_id = 'plan'")
    )
    ids = [uuid.uuid4() for _ in range(25)]
    params = {"ids": ids, "provider_ids": ["x"] * 25, "statuses": ["queued"] * 25, "in_progress": ids}
    explain = text("EXPLAIN " + str(_RECORD_DISPATCHED))
    plan = "\n".join(row[0] for row in session.execute(explain, {**params, "lease_until": None}))
    assert "ix_scheduled_events_lease_in_progress" not in plan, plan
    assert "pk_scheduled_events" in plan, plan


@respx.mock
def test_an_unexpected_error_in_one_request_loses_none_of_the_others(runtime: Runtime, clock: FrozenClock) -> None:
    """An exception that is none of the classified provider errors (a body that fails to decode, a bug) is an
    unknown outcome for its own attempt only: the accepted ones are still recorded with their provider ids.
    Before, it escaped the batch, nothing was recorded, and the accepted calls were failed closed later."""

    def answers(request: httpx.Request) -> httpx.Response:
        to = json.loads(request.content)["To"]
        if to == target(2):
            raise httpx.DecodingError("incorrect header check", request=request)
        if to == target(3):
            raise RuntimeError("a bug in the client")
        return httpx.Response(200, json={"from": "+1", "to": to, "status": "queued", "call_sid": f"v3:{to}"})

    route = respx.post(TEXML).mock(side_effect=answers)
    events = {i: create(runtime, call_body(clock.now(), telnyx_end_user_target=target(i))) for i in (1, 2, 3)}
    clock.advance(600)
    attempts = claim(runtime)
    words = dispatch_attempts(
        runtime.sessions, attempts, providers=runtime.providers, clock=clock, settings=runtime.settings
    )
    assert sorted(words) == ["sent", "unknown", "unknown"]
    (accepted,) = load(runtime.sessions, events[1]).attempts
    assert (accepted.state, accepted.provider_id) == ("sent", f"v3:{target(1)}")
    for i in (2, 3):
        event = load(runtime.sessions, events[i])
        assert (event.status, event.attempts[0].state) == ("in_progress", "unknown")
    assert (
        dispatch_attempts(
            runtime.sessions, attempts, providers=runtime.providers, clock=clock, settings=runtime.settings
        )
        == []
    )
    assert route.call_count == 3


@respx.mock
def test_accepted_calls_are_recorded_when_recording_a_failure_raises(
    runtime: Runtime, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    respx.post(TEXML).mock(side_effect=provider)
    events = {i: create(runtime, call_body(clock.now(), telnyx_end_user_target=target(i))) for i in (1, 6)}
    clock.advance(600)
    attempts = claim(runtime)

    def database_gone(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(lifecycle, "record_rejected", database_gone)  # target 6 is rejected (422)
    with pytest.raises(RuntimeError, match="went away"):
        dispatch_attempts(
            runtime.sessions, attempts, providers=runtime.providers, clock=clock, settings=runtime.settings
        )
    (accepted,) = load(runtime.sessions, events[1]).attempts
    assert (accepted.state, accepted.provider_id) == ("sent", f"v3:{target(1)}")
