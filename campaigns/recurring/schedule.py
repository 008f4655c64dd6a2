"""Cron arithmetic on local wall time in the definition's IANA zone (both DST changes handled by construction)."""

from __future__ import annotations

import itertools
import zoneinfo
from datetime import UTC, datetime, timedelta

from croniter import croniter

MAX_TICKS_COUNTED = 100_000


def check_cron(expression: object) -> str | None:
    """``None`` when valid, else what is wrong (standard 5-field cron, or @daily/@hourly/...)."""
    if not isinstance(expression, str) or not expression.strip():
        return 'is required, e.g. "0 7 * * *" (daily at 07:00)'
    fields = expression.split()
    if not expression.strip().startswith("@") and len(fields) != 5:
        return f"{expression!r} must have 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression"
    return None


def shortest_interval(expression: str) -> timedelta:
    """The shortest time between two fire times of a valid cron expression, on wall time: the smallest gap
    between the day's minutes it fires at, the wrap from the last of one day to the first of the next included
    (so on the safe side: as if it fired every day)."""
    minutes, hours = croniter(expression).expanded[:2]
    minute_values = range(60) if minutes == ["*"] else [int(m) for m in minutes]
    hour_values = range(24) if hours == ["*"] else [int(h) for h in hours]
    times = sorted(h * 60 + m for h in hour_values for m in minute_values)
    gaps = [b - a for a, b in itertools.pairwise(times)] + [24 * 60 - times[-1] + times[0]]
    return timedelta(minutes=min(gaps))


def next_fire(cron: str, zone: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``, as UTC.

    Matching is on local wall time in ``zone`` (cron semantics), mapped to instants with ``zoneinfo``: no offset
    is ever cached, so both DST changes are handled by construction.
    """
    tz = zoneinfo.ZoneInfo(zone)
    local = after.astimezone(tz).replace(tzinfo=None)
    it = croniter(cron, local - timedelta(minutes=1))
    for _ in range(100_000):
        candidate = it.get_next(datetime).replace(tzinfo=tz).astimezone(UTC)
        if candidate > after:
            return candidate  # type: ignore[no-any-return]
    raise ValueError(f"cron {cron!r} never fires after {after.isoformat()}")


def upcoming(cron: str, zone: str, after: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` fire times after ``after`` (UTC)."""
    times: list[datetime] = []
    at = after
    for _ in range(count):
        at = next_fire(cron, zone, at)
        times.append(at)
    return times


def latest_fire(cron: str, zone: str, first: datetime, now: datetime) -> tuple[datetime, int]:
    """The last fire time in ``[first, now]`` (``first`` is a fire time ≤ now) and how many earlier fire times
    in that range it stands for (the missed ticks a catch-up run folds in; counted up to a bound)."""
    latest, missed = first, 0
    while missed < MAX_TICKS_COUNTED:
        following = next_fire(cron, zone, latest)
        if following > now:
            return latest, missed
        latest, missed = following, missed + 1
    # Absurd downtime for the schedule (e.g. a year of minutely ticks): jump to the end without counting.
    tz = zoneinfo.ZoneInfo(zone)
    it = croniter(cron, now.astimezone(tz).replace(tzinfo=None) + timedelta(minutes=1))
    while True:
        candidate = it.get_prev(datetime).replace(tzinfo=tz).astimezone(UTC)
        if candidate <= now:
            return candidate, missed
