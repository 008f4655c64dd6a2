"""The do-not-contact list is checked again right before sending, and matches numbers in any E.164 spelling."""

from __future__ import annotations

import pytest
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


@pytest.mark.parametrize(
    "target", ["sip:+12125550147@sip.telnyx.com", "sip:12125550147@pstn.example", "sips:+1-212-555-0147@x.example"]
)
def test_a_sip_uri_of_a_listed_number_is_not_dialed(runtime: Runtime, clock: FrozenClock, target: str) -> None:
    """Issue #19 item 3: the list was matched against the URI as written, so a listed number's SIP URI was dialed."""
    with unit_of_work(runtime.sessions) as s:
        suppression.add(s, "+12125550147", now=clock.now())
    event_id = create(runtime, call_body(clock.now(), telnyx_end_user_target=target))
    clock.advance(600)
    assert claim(runtime) == []
    event = load(runtime.sessions, event_id)
    assert event.status == "failed" and event.errors[0].startswith(f"not dispatched: {target} is on the do-not")
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CallAttempt)) == 0


@respx.mock
def test_a_sip_uri_listed_after_the_claim_is_stopped_before_the_send(runtime: Runtime, clock: FrozenClock) -> None:
    route = respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(clock.now(), telnyx_end_user_target="sip:+12125550147@sip.telnyx.com"))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    with unit_of_work(runtime.sessions) as s:
        suppression.add(s, "+12125550147", now=clock.now())
    assert dispatch(runtime, attempt_id) != "sent"
    assert not route.called
    assert load(runtime.sessions, event_id).status == "failed"
