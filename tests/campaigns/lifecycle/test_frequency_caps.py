"""Calling windows and frequency caps at claim time, on real PostgreSQL with the frozen clock.

Reference case 6: a 4th attempt to the same Florida number within 24 h is deferred, even from another agent
number and another campaign; deferrals never consume retry budget; the event says why and until when.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import respx
from sqlalchemy import select

from campaigns import campaign as campaign_service
from campaigns import importing as importer
from campaigns import lifecycle, windows
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.errors import ValidationFailed
from campaigns.models import CallAttempt, ScheduledEvent
from tests.campaigns.lifecycle.harness import TEXML, claim, create, dispatch, load, texml_callback, texml_ok
from tests.factories import call_body
from worker.runtime import Runtime

FLORIDA = "+13055550123"
NOON_MIAMI = datetime(2025, 7, 15, 16, 0, tzinfo=UTC)  # 12:00 EDT, a Tuesday


def florida_call(rt: Runtime, agent: str) -> uuid.UUID:
    body = call_body(rt.clock.now(), ruleset="us", telnyx_agent_target=agent)
    body["telnyx_end_user_target"] = FLORIDA
    body["scheduled_at_fixed_datetime"] = (rt.clock.now() + timedelta(seconds=1)).isoformat()
    return create(rt, body)


def campaign_of(rt: Runtime, phones: list[str], **settings: object) -> uuid.UUID:
    body = {"name": "c", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", **settings}
    parsed = campaign_service.validate_settings(body, now=rt.clock.now())
    data = "phone\n" + "".join(f"{p}\n" for p in phones)
    with unit_of_work(rt.sessions) as s:
        campaign = campaign_service.create_campaign(s, parsed, now=rt.clock.now())
        importer.load_call_list(s, campaign, io.BytesIO(data.encode()), now=rt.clock.now())
        return campaign.id


@respx.mock
def test_case_06_fourth_attempt_in_24h_is_deferred_from_another_agent(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    clock.set(NOON_MIAMI)
    first_times = []
    for n in range(3):  # three calls from three different agent numbers, an hour apart
        event_id = florida_call(runtime, f"+1555345678{n}")
        clock.advance(1)
        (attempt_id,) = claim(runtime)
        first_times.append(clock.now())
        assert dispatch(runtime, attempt_id) == "sent"
        texml_callback(runtime, attempt_id, "completed", 3, duration="30")
        assert load(runtime.sessions, event_id).status == "completed"
        clock.advance(3600)
    fourth = florida_call(runtime, "+15559990000")
    clock.advance(1)
    assert claim(runtime) == []
    event = load(runtime.sessions, fourth)
    assert event.status == "pending" and event.retry_count == 0 and event.attempts == []
    assert event.deferred_until == first_times[0] + timedelta(hours=24)  # when the oldest attempt leaves the window
    assert event.deferred_reason is not None and "frequency cap: 3 attempts per 24 h (FL" in event.deferred_reason
    clock.set(event.deferred_until - timedelta(seconds=1))
    assert claim(runtime) == []  # not due yet
    clock.set(event.deferred_until)
    assert len(claim(runtime)) == 1  # 12:00 EDT next day: in the window, and only two attempts in the last 24 h


def test_a_batch_counts_the_attempts_it_is_creating(runtime: Runtime, clock: FrozenClock) -> None:
    clock.set(NOON_MIAMI)
    ids = [florida_call(runtime, f"+1555345670{n}") for n in range(5)]
    clock.advance(1)
    assert len(claim(runtime)) == 3  # five events to one Florida number due together: three go, two wait
    waiting = [e for e in (load(runtime.sessions, i) for i in ids) if e.status == "pending"]
    assert len(waiting) == 2
    assert all(e.deferred_until == clock.now() + timedelta(hours=24) for e in waiting)


def test_states_without_a_cap_and_ruleset_none_are_not_capped(runtime: Runtime, clock: FrozenClock) -> None:
    clock.set(NOON_MIAMI)
    for _ in range(5):
        body = call_body(clock.now(), ruleset="us")
        body["telnyx_end_user_target"] = "+12125550101"  # New York: no state cap
        body["scheduled_at_fixed_datetime"] = (clock.now() + timedelta(seconds=1)).isoformat()
        create(runtime, body)
        body = call_body(clock.now(), ruleset="none")
        body["telnyx_end_user_target"] = FLORIDA
        body["scheduled_at_fixed_datetime"] = (clock.now() + timedelta(seconds=1)).isoformat()
        create(runtime, body)
    clock.advance(1)
    assert len(claim(runtime)) == 10


def test_campaign_cap_counts_attempts_from_every_campaign(runtime: Runtime, clock: FrozenClock) -> None:
    clock.set(NOON_MIAMI)
    body = call_body(clock.now(), ruleset="none")
    body["telnyx_end_user_target"] = "+12125550101"
    body["scheduled_at_fixed_datetime"] = (clock.now() + timedelta(seconds=1)).isoformat()
    create(runtime, body)
    clock.advance(1)
    assert len(claim(runtime)) == 1  # an earlier call from outside the campaign
    earlier = clock.now()
    clock.advance(600)
    campaign_id = campaign_of(runtime, ["+12125550101", "+12125550102"], ruleset="none", cap_max_attempts=1,
                              cap_window_secs=3600)  # fmt: skip
    assert len(claim(runtime)) == 1  # only +12125550102: the other number had a call 10 minutes ago
    with runtime.sessions() as s:
        capped = s.scalars(select(ScheduledEvent).where(ScheduledEvent.campaign_id == campaign_id,
                                                        ScheduledEvent.status == "pending")).one()  # fmt: skip
    assert capped.telnyx_end_user_target == "+12125550101"
    assert capped.deferred_reason == "frequency cap: 1 attempts per 1 h (campaign cap)"
    assert capped.deferred_until == earlier + timedelta(hours=1)


def test_two_schedulers_cannot_both_take_the_last_slot(runtime: Runtime, clock: FrozenClock) -> None:
    clock.set(NOON_MIAMI)
    florida_call(runtime, "+15553456701")
    florida_call(runtime, "+15553456702")
    clock.advance(1)
    assert len(claim(runtime)) == 2
    earlier = clock.now()
    first, second = florida_call(runtime, "+15553456703"), florida_call(runtime, "+15553456704")
    clock.advance(1)
    lease, rt = timedelta(minutes=2), runtime
    with unit_of_work(runtime.sessions) as a:
        claimed_a = lifecycle.claim_due_events(a, now=clock.now(), limit=1, lease=lease, providers=rt.providers)
        # A holds the per-number lock until it commits; B, claiming meanwhile, must not count without it.
        with unit_of_work(runtime.sessions) as b:
            claimed_b = lifecycle.claim_due_events(
                b, now=clock.now(), limit=1, lease=lease, providers=runtime.providers
            )
    assert len(claimed_a) == 1 and claimed_b == []
    other = second if claimed_a[0].event_id == first else first
    event = load(runtime.sessions, other)
    assert event.status == "pending" and event.deferred_reason == "frequency cap: another scheduler is counting"
    clock.advance(1)
    assert claim(runtime) == []  # now it counts three attempts and waits for the window to roll
    assert load(runtime.sessions, other).deferred_until == earlier + timedelta(hours=24)
    with runtime.sessions() as s:
        assert s.query(CallAttempt).filter(CallAttempt.recipient == FLORIDA).count() == 3


def test_toll_free_number_without_a_zone_is_held_and_reported(runtime: Runtime, clock: FrozenClock) -> None:
    clock.set(NOON_MIAMI)
    body = call_body(clock.now(), ruleset="us")
    body["telnyx_end_user_target"] = "+18005550123"
    body["scheduled_at_fixed_datetime"] = (clock.now() + timedelta(seconds=1)).isoformat()
    event_id = create(runtime, body)
    clock.advance(1)
    assert claim(runtime) == []
    event = load(runtime.sessions, event_id)
    assert event.status == "pending" and event.scheduled_at_fixed_datetime == windows.HOLD_UNTIL
    assert event.deferred_reason == "held: the recipient's time zone could not be determined"


def test_custom_weekly_window_of_a_campaign(runtime: Runtime, clock: FrozenClock) -> None:
    clock.set(datetime(2025, 7, 15, 7, 0, tzinfo=UTC))  # 08:00 in London, a Tuesday
    campaign_of(runtime, ["+447911123456"], ruleset="custom", timezone="Europe/London",
                custom_windows={"hours": {"mon-fri": "09:00-17:30"}})  # fmt: skip
    assert claim(runtime) == []
    with runtime.sessions() as s:
        event = s.scalars(select(ScheduledEvent)).one()
    assert event.deferred_until == datetime(2025, 7, 15, 8, 0, tzinfo=UTC)  # 09:00 BST
    assert event.timezone_candidates == ["Europe/London"]  # a UK mobile is not geographic: the campaign default
    clock.set(event.deferred_until)
    assert len(claim(runtime)) == 1


@pytest.mark.parametrize(
    "hours",
    [{"mon-fri": "09:00-20:00", "fri": "09:00-17:00"}, {"fri": "09:00-17:00", "mon-fri": "09:00-20:00"}],
)
def test_a_single_day_beats_an_overlapping_range_whatever_the_key_order(
    runtime: Runtime, clock: FrozenClock, hours: dict[str, str]
) -> None:
    """Issue #19 item 2: the keys went through ``sort_keys`` and JSONB, so "mon-fri" was applied last and a Friday
    18:00 in London was dialed."""
    clock.set(datetime(2025, 7, 18, 17, 0, tzinfo=UTC))  # Friday 18:00 in London (BST)
    campaign_of(runtime, ["+447911123456"], ruleset="custom", timezone="Europe/London",
                custom_windows={"hours": hours})  # fmt: skip
    assert claim(runtime) == []
    with runtime.sessions() as s:
        event = s.scalars(select(ScheduledEvent)).one()
    assert event.deferred_until == datetime(2025, 7, 21, 8, 0, tzinfo=UTC)  # Monday 09:00 BST
    assert event.deferred_reason is not None and "outside the calling window" in event.deferred_reason
    clock.set(datetime(2025, 7, 17, 17, 0, tzinfo=UTC))  # a Thursday at 18:00 is inside mon-fri 09:00-20:00
    with unit_of_work(runtime.sessions) as s:
        s.scalars(select(ScheduledEvent)).one().scheduled_at_fixed_datetime = clock.now()
    assert len(claim(runtime)) == 1


def test_a_ruleset_that_disappeared_holds_instead_of_calling(runtime: Runtime, clock: FrozenClock) -> None:
    clock.set(NOON_MIAMI)
    body = call_body(clock.now(), ruleset="us")
    body["scheduled_at_fixed_datetime"] = (clock.now() + timedelta(seconds=1)).isoformat()
    event_id = create(runtime, body)
    with unit_of_work(runtime.sessions) as s:
        s.get(ScheduledEvent, event_id).ruleset = "gone"  # type: ignore[union-attr]
    clock.advance(1)
    assert claim(runtime) == []
    assert load(runtime.sessions, event_id).deferred_reason == "held: ruleset 'gone' is not defined or invalid"


@pytest.mark.parametrize(
    ("settings", "pointer", "detail"),
    [
        ({"ruleset": "custom"}, "/campaign/custom_windows", "is required with ruleset custom"),
        ({"ruleset": "us", "custom_windows": {"hours": {"mon": "09:00-17:00"}}}, "/campaign/custom_windows",
         "is only used with ruleset custom"),
        ({"ruleset": "custom", "custom_windows": {"hours": {"mon": "17:00-09:00"}}}, "/campaign/custom_windows",
         "custom_windows.hours.mon: '17:00-09:00' must be a non-empty span"),
        ({"ruleset": "custom", "custom_windows": {"hours": {"thu-sat": "10:00-12:00", "mon-fri": "09:00-17:00"}}},
         "/campaign/custom_windows", "custom_windows.hours: 'mon-fri' and 'thu-sat' both set thu; overlapping keys"),
        ({"ruleset": "mars"}, "/campaign/ruleset", "must be one of au, ca, custom, none, us"),
        ({"cap_max_attempts": 0}, "/campaign/cap_max_attempts", "must be a positive integer"),
        ({"cap_window_secs": 60}, "/campaign/cap_window_secs", "needs cap_max_attempts"),
    ],
)  # fmt: skip
def test_bad_window_and_cap_settings_are_named(settings: dict[str, object], pointer: str, detail: str) -> None:
    body = {"name": "c", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", **settings}
    with pytest.raises(ValidationFailed) as failed:
        campaign_service.validate_settings(body, now=NOON_MIAMI)
    [error] = failed.value.errors
    assert error.pointer == pointer and error.detail.startswith(detail)


def test_held_recipients_are_reported_by_the_campaign_and_its_export(runtime: Runtime, clock: FrozenClock) -> None:
    from campaigns.importing import export_results

    clock.set(NOON_MIAMI)
    campaign_id = campaign_of(runtime, ["+18005550123", "+12125550101"])
    clock.advance(1)
    assert len(claim(runtime)) == 1
    with runtime.sessions() as s:
        campaign = campaign_service.get_campaign(s, campaign_id)
        body = campaign_service.serialize_campaign(s, campaign)
        rows = list(__import__("csv").DictReader(io.StringIO("".join(export_results(s, campaign)))))
    assert body["held"] == 1 and body["counts"]["pending"] == 1
    held = next(r for r in rows if r["phone"] == "+18005550123")
    assert held["deferred_reason"] == "held: the recipient's time zone could not be determined"
    assert held["hold_reason"] == held["deferred_reason"] and held["deferred_until"] == ""  # not 9999-01-01


@respx.mock
def test_a_call_held_in_the_queue_past_closing_time_is_not_sent(runtime: Runtime, clock: FrozenClock) -> None:
    route = respx.post(TEXML).mock(side_effect=texml_ok)
    clock.set(datetime(2025, 7, 16, 0, 59, 0, tzinfo=UTC))  # 20:59 in New York
    body = call_body(clock.now(), ruleset="us")
    body["telnyx_end_user_target"] = "+12125550101"
    body["scheduled_at_fixed_datetime"] = (clock.now() + timedelta(seconds=1)).isoformat()
    event_id = create(runtime, body)
    clock.advance(30)
    (attempt_id,) = claim(runtime)  # claimed at 20:59:30, inside the window
    clock.advance(60)  # the worker gets to it at 21:00:30
    assert dispatch(runtime, attempt_id) != "sent"
    assert not route.called
    event = load(runtime.sessions, event_id)
    assert event.status == "pending" and event.retry_count == 0 and event.attempts == []
    assert event.scheduled_at_fixed_datetime == datetime(2025, 7, 16, 12, 0, tzinfo=UTC)  # 08:00 EDT
    assert event.deferred_reason is not None and "calling window" in event.deferred_reason


def us_call_due_now(clock: FrozenClock, target: str, **overrides: object) -> dict[str, object]:
    """A call to ``target`` under ruleset ``us``, due a second from now."""
    body = call_body(clock.now(), ruleset="us", telnyx_end_user_target=target, **overrides)
    body["scheduled_at_fixed_datetime"] = (clock.now() + timedelta(seconds=1)).isoformat()
    return body


def test_a_sip_uri_of_a_florida_number_gets_florida_windows(runtime: Runtime, clock: FrozenClock) -> None:
    """Issue #19 item 3: a SIP URI target was never given a window (its zones came from nothing)."""
    clock.set(datetime(2025, 7, 15, 0, 30, tzinfo=UTC))  # 20:30 EDT: past Florida's 20:00
    event_id = create(runtime, us_call_due_now(clock, "sip:+13055550123@sip.telnyx.com"))
    clock.advance(1)
    assert claim(runtime) == []
    event = load(runtime.sessions, event_id)
    assert event.status == "pending" and event.deferred_until == datetime(2025, 7, 15, 12, 0, tzinfo=UTC)
    assert event.deferred_reason is not None and "FL" in event.deferred_reason


@respx.mock
def test_a_sip_uri_and_its_number_share_the_frequency_cap(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    clock.set(NOON_MIAMI)
    spellings = [FLORIDA, "sip:+13055550123@sip.telnyx.com", "sip:13055550123@pstn.example", FLORIDA]
    ids = []
    for n, target in enumerate(spellings):
        ids.append(create(runtime, us_call_due_now(clock, target, telnyx_agent_target=f"+1555345678{n}")))
        clock.advance(1)
        claimed = claim(runtime)
        if n < 3:
            assert len(claimed) == 1, target
            clock.advance(600)
    fourth = load(runtime.sessions, ids[3])
    assert fourth.status == "pending" and fourth.deferred_reason is not None
    assert fourth.deferred_reason.startswith("frequency cap: 3 attempts per 24 h")


def test_a_sip_username_gets_no_window_and_it_is_said(
    runtime: Runtime, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    clock.set(datetime(2025, 7, 15, 7, 0, tzinfo=UTC))  # 03:00 in New York: every US window is closed
    create(runtime, us_call_due_now(clock, "sip:alice@pbx.example"))
    clock.advance(1)
    with caplog.at_level("INFO", logger="campaigns.lifecycle.checks"):
        assert len(claim(runtime)) == 1
    assert "no calling window: the SIP target's user part is no phone number" in caplog.text


def test_a_sip_uri_of_digits_that_are_no_number_is_held(runtime: Runtime, clock: FrozenClock) -> None:
    clock.set(NOON_MIAMI)
    event_id = create(runtime, us_call_due_now(clock, "sip:5550123@pstn.example"))
    clock.advance(1)
    assert claim(runtime) == []
    event = load(runtime.sessions, event_id)
    assert event.scheduled_at_fixed_datetime == windows.HOLD_UNTIL
    assert event.deferred_reason is not None and "user part is digits but not a phone number" in event.deferred_reason
