"""Fire times on local wall time in the definition's zone: DST-correct, missed ticks counted (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns import recurring
from tests.campaigns.recurring.support import Z

# --- schedules (pure) -----------------------------------------------------------------------------------------


def test_daily_seven_am_new_york_in_utc_across_both_dst_changes() -> None:
    spring = recurring.upcoming("0 7 * * *", "America/New_York", Z("2026-03-06T00:00Z"), 4)
    assert spring == [Z("2026-03-06T12:00Z"), Z("2026-03-07T12:00Z"), Z("2026-03-08T11:00Z"), Z("2026-03-09T11:00Z")]
    fall = recurring.upcoming("0 7 * * *", "America/New_York", Z("2026-10-30T00:00Z"), 4)
    assert fall == [Z("2026-10-30T11:00Z"), Z("2026-10-31T11:00Z"), Z("2026-11-01T12:00Z"), Z("2026-11-02T12:00Z")]


def test_wall_times_in_the_gap_run_after_it_and_repeated_ones_run_once() -> None:
    # 02:30 does not exist on 2026-03-08 in New York: that day it runs at 03:30 EDT (07:30Z), right after the gap.
    assert recurring.upcoming("30 2 * * *", "America/New_York", Z("2026-03-07T00:00Z"), 3) == [
        Z("2026-03-07T07:30Z"),
        Z("2026-03-08T07:30Z"),
        Z("2026-03-09T06:30Z"),
    ]
    # 01:30 happens twice on 2026-11-01: it runs once, at the first (EDT) one.
    assert recurring.upcoming("30 1 * * *", "America/New_York", Z("2026-10-31T00:00Z"), 3) == [
        Z("2026-10-31T05:30Z"),
        Z("2026-11-01T05:30Z"),
        Z("2026-11-02T06:30Z"),
    ]
    # Asking again from inside the repeated hour does not run it a second time.
    assert recurring.next_fire("30 1 * * *", "America/New_York", Z("2026-11-01T06:15Z")) == Z("2026-11-02T06:30Z")


@settings(max_examples=200, deadline=None)
@given(
    after=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    zone=st.sampled_from(["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata", "UTC"]),
)
def test_next_fire_is_the_first_matching_wall_time_after(after: datetime, hour: int, minute: int, zone: str) -> None:
    fire = recurring.next_fire(f"{minute} {hour} * * *", zone, after)
    assert after < fire <= after + timedelta(days=2)
    local = fire.astimezone(ZoneInfo(zone))
    wanted = time(hour, minute)
    # Either the wall time matches, or it did not exist that day and this is the instant right after the gap.
    exists = datetime.combine(local.date(), wanted, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    assert local.time() == wanted or exists == fire
    # No fire time was skipped: the day before's occurrence (if after `after`) would have come first.
    earlier = recurring.local_instant(local.date() - timedelta(days=1), wanted, zone)
    assert earlier <= after or earlier >= fire


def test_latest_fire_counts_the_missed_ticks() -> None:
    tick, missed = recurring.latest_fire(
        "0 7 * * *", "America/New_York", Z("2026-11-20T12:00Z"), Z("2026-11-22T13:00Z")
    )
    assert (tick, missed) == (Z("2026-11-22T12:00Z"), 2)
    assert recurring.latest_fire("0 7 * * *", "America/New_York", Z("2026-11-20T12:00Z"), Z("2026-11-20T12:00Z")) == (
        Z("2026-11-20T12:00Z"),
        0,
    )
