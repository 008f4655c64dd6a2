"""The do-not-contact list is checked again right before sending, and matches numbers in any E.164 spelling."""

from __future__ import annotations

import respx
from sqlalchemy import func, select

from campaigns import suppression
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.models import CallAttempt
from tests.campaigns.lifecycle.harness import TEXML, claim, create, dispatch, load, texml_ok
from tests.factories import call_body
from worker.runtime import Runtime


@respx.mock
def test_a_stop_between_claim_and_send_stops_the_send(runtime: Runtime, clock: FrozenClock) -> None:
    route = respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)  # claimed while the number was still callable
    with unit_of_work(runtime.sessions) as s:
        suppression.apply_inbound_message(s, "+15551234567", "STOP", now=clock.now())
    assert dispatch(runtime, attempt_id) != "sent"
    assert not route.called  # no provider request
    event = load(runtime.sessions, event_id)
    assert event.status == "failed" and event.attempts == []
    assert event.errors == ["not dispatched: +15551234567 is on the do-not-contact list "
                            "(sms_opt_out: the recipient opted out by SMS)"]  # fmt: skip


def test_a_target_written_with_a_trunk_zero_matches_its_listed_number(runtime: Runtime, clock: FrozenClock) -> None:
    with unit_of_work(runtime.sessions) as s:
        suppression.add(s, "+442079460000", now=clock.now())
    body = call_body(clock.now())
    body["telnyx_end_user_target"] = "+4402079460000"  # the events API keeps what the client sent
    event_id = create(runtime, body)
    clock.advance(600)
    assert claim(runtime) == []
    event = load(runtime.sessions, event_id)
    assert event.status == "failed" and "is on the do-not-contact list (manual" in event.errors[0]
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CallAttempt)) == 0
