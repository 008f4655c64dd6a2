"""An unknown TeXML attempt is looked up in the account's call list before it fails closed (issue 21): TeXML has
no idempotency key, so it is never sent again, but a call the list shows is this attempt's call."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pytest
import respx

from campaigns.clock import FrozenClock, iso
from campaigns.db import unit_of_work
from campaigns.models import CallAttempt
from campaigns.settings import sending_lease
from tests.campaigns.lifecycle import harness
from tests.campaigns.lifecycle.harness import TEXML, claim, load, reconcile_as_beat, runtime_with, texml_callback
from tests.conftest import TEST_TELNYX_BASE_URL
from tests.factories import call_body
from worker.runtime import Runtime

LIST = f"{TEST_TELNYX_BASE_URL}/texml/Accounts/AC-test/Calls"


@pytest.fixture
def rt(runtime: Runtime) -> Runtime:
    return runtime_with(runtime, telnyx_account_sid="AC-test")


def died_while_sending(rt: Runtime, clock: FrozenClock) -> tuple[uuid.UUID, uuid.UUID, datetime]:
    """The worker committed ``sending`` and died; the sending lease has expired."""
    return harness.died_while_sending(rt, clock, call_body(clock.now()), provider="texml")


def listed(*calls: tuple[str, datetime], to: str = "+15551234567", from_: str = "+15553456789") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "calls": [{"sid": sid, "from": from_, "to": to, "date_created": iso(at)} for sid, at in calls],
            "page": 0,
            "next_page_uri": None,
        },
    )


@respx.mock
def test_a_call_the_list_shows_is_the_attempts_call(rt: Runtime, clock: FrozenClock) -> None:
    event_id, _, sent_at = died_while_sending(rt, clock)
    event = load(rt.sessions, event_id)
    route = respx.get(LIST).mock(return_value=listed(("v3:placed", sent_at + timedelta(seconds=1))))
    dial = respx.post(TEXML).mock(return_value=httpx.Response(200))
    report = reconcile_as_beat(rt)
    assert (report.found_placed, report.failed_unknown, dial.call_count) == (1, 0, 0)
    query = route.calls.last.request.url.params
    assert (query["From"], query["To"], query["StartTime_gt"]) == (
        event.telnyx_agent_target,
        event.telnyx_end_user_target,
        (sent_at - timedelta(days=1)).date().isoformat(),
    )
    event = load(rt.sessions, event_id)
    (attempt,) = event.attempts
    assert (event.status, attempt.state, attempt.provider_id, event.errors) == ("in_progress", "sent", "v3:placed", [])
    assert event.lease_expires_at == clock.now() + timedelta(seconds=rt.settings.call_lease_secs)


@respx.mock
def test_the_list_is_asked_again_until_the_bound_then_the_event_fails_closed(rt: Runtime, clock: FrozenClock) -> None:
    """A call made before the request, and another attempt's call, are not this attempt's; the list is eventually
    consistent, so an empty answer is asked again a sending lease later, until ``unknown_lookup_secs``; with
    ``redial_not_found`` off, the event then fails closed."""
    rt = runtime_with(rt, redial_not_found=False)
    event_id, _attempt_id, sent_at = died_while_sending(rt, clock)
    with unit_of_work(rt.sessions) as s:  # the event's earlier attempt, to the same number
        s.add(CallAttempt(event_id=event_id, attempt_number=0, state="finished", provider="texml",
                          claimed_at=sent_at, provider_id="v3:earlier"))  # fmt: skip
    respx.get(LIST).mock(
        return_value=listed(("v3:yesterday", sent_at - timedelta(hours=20)), ("v3:earlier", sent_at + timedelta(1)))
    )
    report = reconcile_as_beat(rt)
    assert (report.looked_up, report.found_placed, report.failed_unknown) == (1, 0, 0)
    event = load(rt.sessions, event_id)
    assert event.status == "in_progress"
    assert event.lease_expires_at == clock.now() + timedelta(seconds=sending_lease(rt.settings))
    assert reconcile_as_beat(rt).looked_up == 0  # not before its lease: the list is not asked every pass
    clock.set(sent_at + timedelta(seconds=rt.settings.unknown_lookup_secs))
    report = reconcile_as_beat(rt)
    assert (report.looked_up, report.failed_unknown) == (0, 1)
    event = load(rt.sessions, event_id)
    assert event.status == "failed"
    assert "call list showed no call from +15553456789 to +15551234567 within 300 s" in event.errors[-1]
    assert "not re-dialled" in event.errors[-1]


@respx.mock
def test_a_call_that_shows_late_is_found(rt: Runtime, clock: FrozenClock) -> None:
    event_id, _, sent_at = died_while_sending(rt, clock)
    respx.get(LIST).mock(side_effect=[listed(), listed(("v3:late", sent_at))])
    assert reconcile_as_beat(rt).looked_up == 1
    clock.advance(sending_lease(rt.settings) + 1)
    assert reconcile_as_beat(rt).found_placed == 1
    (attempt,) = load(rt.sessions, event_id).attempts
    assert (attempt.state, attempt.provider_id) == ("sent", "v3:late")


@respx.mock
def test_when_the_list_cannot_be_read_the_event_fails_closed_at_the_bound(rt: Runtime, clock: FrozenClock) -> None:
    event_id, _, sent_at = died_while_sending(rt, clock)
    respx.get(LIST).mock(return_value=httpx.Response(500))
    assert reconcile_as_beat(rt).looked_up == 1
    clock.set(sent_at + timedelta(seconds=rt.settings.unknown_lookup_secs + 1))
    assert reconcile_as_beat(rt).failed_unknown == 1
    assert "call list could not be read: OutcomeUnknown" in load(rt.sessions, event_id).errors[-1]


@respx.mock
def test_without_an_account_sid_nothing_is_asked(runtime: Runtime, clock: FrozenClock) -> None:
    event_id, _, _ = died_while_sending(runtime, clock)
    route = respx.get(url__startswith=f"{TEST_TELNYX_BASE_URL}/texml/Accounts/").mock(return_value=listed())
    assert reconcile_as_beat(runtime).failed_unknown == 1
    assert route.call_count == 0
    assert "the provider request timed out after sending" in load(runtime.sessions, event_id).errors[-1]


@respx.mock
def test_an_attempt_the_list_never_shows_was_not_placed_and_is_dialled_again(rt: Runtime, clock: FrozenClock) -> None:
    """Issue 21: at the bound, the list (read without error) still shows no call and no callback named the attempt:
    by the provider's records nobody was called. The attempt stays on the record as ``not_placed``, no budget is
    spent, and the event is dialled again."""
    event_id, attempt_id, sent_at = died_while_sending(rt, clock)
    respx.get(LIST).mock(return_value=listed())
    assert reconcile_as_beat(rt).looked_up == 1
    clock.set(sent_at + timedelta(seconds=rt.settings.unknown_lookup_secs))
    report = reconcile_as_beat(rt)
    assert (report.not_placed, report.failed_unknown, report.looked_up) == (1, 0, 0)
    event = load(rt.sessions, event_id)
    (attempt,) = event.attempts
    assert (event.status, event.retry_count, event.free_attempts, event.errors) == ("pending", 0, 1, [])
    assert (attempt.id, attempt.state, attempt.call_status) == (attempt_id, "finished", None)
    assert attempt.outcome == "not_placed"
    assert "call list showed no call from +15553456789 to +15551234567 within 300 s" in (attempt.error or "")
    respx.post(TEXML).mock(return_value=httpx.Response(200, json={"call_sid": "v3:second"}))
    (second,) = claim(rt)
    assert second != attempt_id
    assert [a.attempt_number for a in load(rt.sessions, event_id).attempts] == [1, 2]


@respx.mock
def test_a_callback_during_the_lookup_proves_the_call_placed(rt: Runtime, clock: FrozenClock) -> None:
    """The list lags, but the call's own callback names the attempt: placed, never "not placed" nor dialled again."""
    event_id, attempt_id, sent_at = died_while_sending(rt, clock)
    respx.get(LIST).mock(return_value=listed())
    assert reconcile_as_beat(rt).looked_up == 1
    assert texml_callback(rt, attempt_id, "in-progress", 2) in ("progress", "answered")
    respx.get(url__startswith=f"{TEST_TELNYX_BASE_URL}/calls/").mock(
        return_value=httpx.Response(200, json={"data": {"is_alive": True}})
    )
    clock.set(sent_at + timedelta(seconds=rt.settings.unknown_lookup_secs))
    report = reconcile_as_beat(rt)
    assert (report.not_placed, report.failed_unknown) == (0, 0)
    (attempt,) = load(rt.sessions, event_id).attempts
    assert attempt.outcome != "not_placed" and attempt.state == "sent"
