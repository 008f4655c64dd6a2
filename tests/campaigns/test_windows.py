"""The first slice of the calling-window engine: federal US window, zone resolution, DST, properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns import windows

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")


def at(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone).astimezone(UTC)


@pytest.mark.parametrize(
    ("instant", "zones", "allowed"),
    [
        (at(NY, 2025, 7, 15, 7, 59), ["America/New_York"], False),
        (at(NY, 2025, 7, 15, 8, 0), ["America/New_York"], True),
        (at(NY, 2025, 7, 15, 20, 59), ["America/New_York"], True),
        (at(NY, 2025, 7, 15, 21, 0), ["America/New_York"], False),
        # 10:00 in New York is 07:00 in Los Angeles: a recipient who may be in either is not callable yet.
        (at(NY, 2025, 7, 15, 10, 0), ["America/New_York", "America/Los_Angeles"], False),
        (at(NY, 2025, 7, 15, 11, 0), ["America/New_York", "America/Los_Angeles"], True),
        (at(NY, 2025, 7, 15, 12, 0), [], False),  # unknown zone: never
    ],
)
def test_us_window(instant: datetime, zones: list[str], allowed: bool) -> None:
    assert windows.is_allowed(instant, zones, "us") is allowed
    assert windows.is_allowed(instant, zones, "none") is True


def test_next_opening_crosses_zones_and_days() -> None:
    evening = at(LA, 2025, 7, 15, 21, 30)
    assert windows.next_opening(evening, ["America/Los_Angeles"], "us") == at(LA, 2025, 7, 16, 8, 0)
    both = at(NY, 2025, 7, 15, 6, 0)
    assert windows.next_opening(both, ["America/New_York", "America/Los_Angeles"], "us") == at(LA, 2025, 7, 15, 8, 0)
    assert windows.next_opening(both, [], "us") is None


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        # Spring forward (2025-03-09 02:00 EST → 03:00 EDT): the opening is 08:00 EDT = 12:00 UTC.
        (datetime(2025, 3, 9, 6, 0, tzinfo=UTC), datetime(2025, 3, 9, 12, 0, tzinfo=UTC)),
        # Fall back (2025-11-02 02:00 EDT → 01:00 EST): the opening is 08:00 EST = 13:00 UTC.
        (datetime(2025, 11, 2, 5, 0, tzinfo=UTC), datetime(2025, 11, 2, 13, 0, tzinfo=UTC)),
        # 21:00 EST the evening before the change closes at 02:00 UTC.
        (datetime(2025, 3, 9, 1, 59, tzinfo=UTC), datetime(2025, 3, 9, 1, 59, tzinfo=UTC)),
    ],
)
def test_dst_transitions(instant: datetime, expected: datetime) -> None:
    assert windows.next_opening(instant, ["America/New_York"], "us") == expected


def test_zone_resolution_order() -> None:
    assert windows.candidate_zones(phone="+12125550101", timezone="America/Denver", state="CA") == ["America/Denver"]
    assert windows.candidate_zones(phone="+12125550101", state="tx") == ["America/Chicago", "America/Denver"]
    assert windows.candidate_zones(phone="+12125550101") == ["America/New_York"]
    assert windows.candidate_zones(phone="+15551234567", default_zone="America/Phoenix") == ["America/Phoenix"]
    assert windows.candidate_zones(phone="+15551234567") == []


ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
         "America/Anchorage", "Pacific/Honolulu"]  # fmt: skip
instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)).map(
    lambda d: d.replace(second=0, microsecond=0)
)
zone_sets = st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True)


@settings(max_examples=300, deadline=None)
@given(instants, zone_sets)
def test_next_opening_is_allowed_and_nothing_earlier_is(instant: datetime, zones: list[str]) -> None:
    opening = windows.next_opening(instant, zones, "us")
    assert opening is not None
    assert windows.is_allowed(opening, zones, "us")
    minute = instant
    while minute < opening:  # no allowed minute lies between t and the opening
        assert not windows.is_allowed(minute, zones, "us")
        minute += timedelta(minutes=1)


@settings(max_examples=300, deadline=None)
@given(instants, zone_sets)
def test_allowed_for_many_zones_means_allowed_in_each(instant: datetime, zones: list[str]) -> None:
    if windows.is_allowed(instant, zones, "us"):
        assert all(windows.is_allowed(instant, [z], "us") for z in zones)
