"""The calling-window engine: DST, the reference's numbered cases (``shared/reference/calling-hours.md``), state
rules, and hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns import windows
from campaigns.windows import Recipient, Ruleset

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")


def Z(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def at(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone).astimezone(UTC)


def ruleset(name: str) -> Ruleset:
    return windows.get_ruleset(name)


def custom(**hours: str) -> Ruleset:
    return windows.custom_ruleset({"hours": {k.replace("_", "-"): v for k, v in hours.items()}})


def recipient_of(phone: str, *, timezone: str | None = None, state: str | None = None) -> Recipient:
    zones = windows.candidate_zones(phone=phone, timezone=timezone, state=state)
    return windows.recipient_for(phone=phone, zones=zones, state=state)


US, CA, AU, NONE = ruleset("us"), ruleset("ca"), ruleset("au"), ruleset("none")
NEW_YORK = Recipient(("America/New_York",))


# --- the numbered test cases of reference/calling-hours.md -----------------------------------------------


def test_case_01_fall_back_night_opens_at_0800_est() -> None:
    assert windows.next_opening(Z("2025-11-02T02:00Z"), NEW_YORK, US) == Z("2025-11-02T13:00Z")


def test_case_02_spring_forward_opens_at_0800_edt() -> None:
    assert windows.next_opening(Z("2025-03-09T02:30Z"), NEW_YORK, US) == Z("2025-03-09T12:00Z")


def test_case_03_opening_in_the_gap_opens_when_the_gap_ends() -> None:
    assert windows.next_opening(Z("2025-03-09T05:00Z"), NEW_YORK, custom(daily="02:30-23:00")) == Z("2025-03-09T07:00Z")


def test_case_04_boise_and_los_angeles() -> None:
    recipient = recipient_of("+12083001234")
    assert recipient.zones == ("America/Boise", "America/Los_Angeles")
    assert not windows.is_allowed(Z("2025-07-15T14:30Z"), recipient, US)
    assert windows.next_opening(Z("2025-07-15T14:30Z"), recipient, US) == Z("2025-07-15T15:00Z")
    assert windows.is_allowed(Z("2025-07-16T02:59Z"), recipient, US)
    assert not windows.is_allowed(Z("2025-07-16T03:00Z"), recipient, US)


def test_case_05_denver_and_phoenix() -> None:
    recipient = recipient_of("+19288711234")
    assert recipient.zones == ("America/Denver", "America/Phoenix")
    assert not windows.is_allowed(Z("2025-07-16T03:30Z"), recipient, US)  # 21:30 MDT
    assert windows.is_allowed(Z("2025-01-16T03:30Z"), recipient, US)  # 20:30 MST in both


def test_case_06_florida_closes_at_2000_and_caps_three_per_day() -> None:
    recipient = recipient_of("+13055550123")
    assert recipient.states == ("FL",)
    assert not windows.is_allowed(Z("2025-07-15T00:30Z"), recipient, US)  # 20:30 EDT: federal allows, Florida not
    assert windows.next_opening(Z("2025-07-15T00:30Z"), recipient, US) == Z("2025-07-15T12:00Z")
    [(rule, cap)] = US.caps_for(recipient.states)
    assert (rule.id, cap.attempts, cap.window) == ("FL", 3, timedelta(hours=24))
    # The 4th attempt within 24 h, from another agent number, is deferred: lifecycle/test_frequency_caps.py.


def test_case_07_pensacola_exchange_is_central_and_under_florida_rules() -> None:
    recipient = recipient_of("+18504341234")
    assert recipient.zones == ("America/Chicago",)
    assert recipient.states == ("FL",)
    assert recipient_of("+18505551234").zones == ("America/New_York",)  # the rest of 850 is Eastern
    assert not windows.is_allowed(Z("2025-07-15T01:30Z"), recipient, US)  # 20:30 CDT
    assert windows.is_allowed(Z("2025-07-15T00:30Z"), recipient, US)  # 19:30 CDT


def test_case_08_louisiana_sundays_and_holidays() -> None:
    recipient = recipient_of("+15045550123")
    assert recipient.states == ("LA",)
    sunday = Z("2025-07-13T05:00Z")  # 00:00 CDT
    while sunday < Z("2025-07-14T05:00Z"):
        assert not windows.is_allowed(sunday, recipient, US)
        sunday += timedelta(minutes=15)
    assert windows.is_allowed(Z("2025-07-14T13:00Z"), recipient, US)  # Monday 08:00 CDT
    assert not windows.is_allowed(Z("2025-07-04T16:00Z"), recipient, US)  # Independence Day, a Friday
    assert windows.next_opening(Z("2025-07-04T16:00Z"), recipient, US) == Z("2025-07-05T13:00Z")


def test_case_09_mississippi_uses_fixed_central_standard_time() -> None:
    recipient = recipient_of("+16015550123")
    assert recipient.states == ("MS",)
    assert not windows.is_allowed(Z("2025-07-15T13:30Z"), recipient, US)  # 08:30 CDT but 07:30 CST
    assert windows.next_opening(Z("2025-07-15T13:30Z"), recipient, US) == Z("2025-07-15T14:00Z")


def test_case_10_canada_weekend_and_weekday_hours() -> None:
    toronto = Recipient(("America/Toronto",))
    assert windows.is_allowed(Z("2025-07-12T21:59Z"), toronto, CA)  # Saturday 17:59 EDT
    assert not windows.is_allowed(Z("2025-07-12T22:00Z"), toronto, CA)
    assert windows.is_allowed(at(ZoneInfo("America/Toronto"), 2025, 7, 15, 21, 29), toronto, CA)
    assert not windows.is_allowed(at(ZoneInfo("America/Toronto"), 2025, 7, 15, 21, 30), toronto, CA)
    assert recipient_of("+14165550123").zones == ("America/Toronto",)


def test_case_11_toll_free_without_a_zone_is_held() -> None:
    recipient = recipient_of("+18005550123")
    assert recipient.zones == ()
    assert not windows.is_allowed(Z("2025-07-15T16:00Z"), recipient, US)
    assert windows.next_opening(Z("2025-07-15T16:00Z"), recipient, US) is None
    # With a zone given, the same number is callable.
    assert windows.is_allowed(Z("2025-07-15T16:00Z"), recipient_of("+18005550123", timezone="America/Denver"), US)


def test_case_12_santiago_midnight_gap() -> None:
    santiago = Recipient(("America/Santiago",))
    assert windows.next_opening(Z("2025-09-07T03:00Z"), santiago, custom(daily="00:30-23:00")) == Z("2025-09-07T04:00Z")


def test_case_13_no_cached_offset_across_the_fall_back() -> None:
    assert windows.is_allowed(Z("2025-11-01T12:30Z"), NEW_YORK, US)  # Saturday 08:30 EDT
    assert not windows.is_allowed(Z("2025-11-02T12:30Z"), NEW_YORK, US)  # Sunday 07:30 EST
    assert windows.next_opening(Z("2025-11-02T01:30Z"), NEW_YORK, US) == Z("2025-11-02T13:00Z")


# --- more of the engine ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "zones", "allowed"),
    [
        (at(NY, 2025, 7, 15, 7, 59), ("America/New_York",), False),
        (at(NY, 2025, 7, 15, 8, 0), ("America/New_York",), True),
        (at(NY, 2025, 7, 15, 20, 59), ("America/New_York",), True),
        (at(NY, 2025, 7, 15, 21, 0), ("America/New_York",), False),
        # 10:00 in New York is 07:00 in Los Angeles: a recipient who may be in either is not callable yet.
        (at(NY, 2025, 7, 15, 10, 0), ("America/New_York", "America/Los_Angeles"), False),
        (at(NY, 2025, 7, 15, 11, 0), ("America/New_York", "America/Los_Angeles"), True),
        (at(NY, 2025, 7, 15, 12, 0), (), False),  # unknown zone: never
    ],
)
def test_federal_window(instant: datetime, zones: tuple[str, ...], allowed: bool) -> None:
    assert windows.is_allowed(instant, Recipient(zones), US) is allowed
    assert windows.is_allowed(instant, Recipient(zones), NONE) is True


def test_state_rules_from_the_row_and_from_the_number_both_apply() -> None:
    # A Florida number whose row says New York: both states' rules apply (Florida presumes its area codes).
    recipient = recipient_of("+13055550123", state="NY")
    assert recipient.states == ("FL", "NY")
    assert recipient.zones == ("America/New_York",)
    assert not windows.is_allowed(Z("2025-07-15T00:30Z"), recipient, US)


def test_texas_sunday_noon_and_utah_holidays_follow_the_shipped_data() -> None:
    texas = Recipient(("America/Chicago",), ("TX",))
    assert not windows.is_allowed(at(ZoneInfo("America/Chicago"), 2025, 7, 13, 11, 30), texas, US)
    assert windows.is_allowed(at(ZoneInfo("America/Chicago"), 2025, 7, 13, 12, 0), texas, US)
    assert not windows.is_allowed(at(ZoneInfo("America/Chicago"), 2025, 7, 14, 8, 30), texas, US)  # opens at 9
    utah = Recipient(("America/Denver",), ("UT",))
    pioneer_day = at(ZoneInfo("America/Denver"), 2025, 7, 24, 12, 0)  # a Utah state holiday, Thursday
    assert not windows.is_allowed(pioneer_day, utah, US)
    assert windows.is_allowed(pioneer_day, Recipient(("America/Denver",), ("CO",)), US)


def test_australia_closes_sundays_and_national_holidays() -> None:
    sydney = Recipient(("Australia/Sydney",))
    anzac_day = at(ZoneInfo("Australia/Sydney"), 2025, 4, 25, 12, 0)
    assert not windows.is_allowed(anzac_day, sydney, AU)
    assert windows.next_opening(anzac_day, sydney, AU) == at(ZoneInfo("Australia/Sydney"), 2025, 4, 26, 9, 0)
    saturday_evening = at(ZoneInfo("Australia/Sydney"), 2025, 4, 26, 17, 0)
    assert windows.next_opening(saturday_evening, sydney, AU) == at(ZoneInfo("Australia/Sydney"), 2025, 4, 28, 9, 0)


def test_a_window_that_never_opens_gives_no_opening() -> None:
    closed = windows.custom_ruleset({"hours": {"mon": "closed", "mon-sun": "closed"}})
    assert closed.rules[0].week == ((),) * 7
    assert windows.next_opening(Z("2025-07-15T00:00Z"), NEW_YORK, closed) is None


# --- properties ------------------------------------------------------------------------------------------

ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
         "America/Anchorage", "Pacific/Honolulu", "America/Santiago", "Australia/Lord_Howe", "Europe/London",
         "America/Toronto", "Asia/Kolkata"]  # fmt: skip
STATES = ["FL", "LA", "MS", "UT", "TX", "PA", "NY", "RI"]
instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)).map(
    lambda d: d.replace(second=0, microsecond=0)
)
recipients = st.builds(
    Recipient,
    st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True).map(tuple),
    st.lists(st.sampled_from(STATES), max_size=2, unique=True).map(lambda s: tuple(sorted(s))),
)


@st.composite
def custom_rulesets(draw: st.DrawFn) -> Ruleset:
    """Arbitrary weekly windows on a quarter-hour grid, including ones around midnight and DST changes."""
    hours: dict[str, str | list[str]] = {}
    for day in windows.DAYS:
        if draw(st.booleans()):
            start = draw(st.integers(0, 95))
            end = draw(st.integers(start + 1, 96))
            hours[day] = f"{start // 4:02d}:{start % 4 * 15:02d}-{end // 4:02d}:{end % 4 * 15:02d}"
        else:
            hours[day] = "closed"
    if all(v == "closed" for v in hours.values()):
        hours["wed"] = "01:30-02:30"
    return windows.custom_ruleset({"hours": hours})


any_ruleset = st.one_of(st.sampled_from([US, CA, AU]), custom_rulesets())


@settings(max_examples=150, deadline=None)
@given(instants, recipients, any_ruleset)
def test_next_opening_is_allowed_and_nothing_earlier_is(instant: datetime, who: Recipient, rules: Ruleset) -> None:
    opening = windows.next_opening(instant, who, rules)
    if opening is None:  # possible for sparse custom windows across several zones: then nothing in the horizon
        minute, end = instant, instant + timedelta(days=windows.SEARCH_DAYS)
    else:
        assert windows.is_allowed(opening, who, rules)
        minute, end = instant, opening
    while minute < end:  # no allowed minute lies between t and the opening
        assert not windows.is_allowed(minute, who, rules), minute
        minute += timedelta(minutes=1)


@settings(max_examples=300, deadline=None)
@given(instants, recipients, any_ruleset)
def test_allowed_for_many_zones_means_allowed_in_each(instant: datetime, who: Recipient, rules: Ruleset) -> None:
    if windows.is_allowed(instant, who, rules):
        assert all(windows.is_allowed(instant, Recipient((z,), who.states), rules) for z in who.zones)
