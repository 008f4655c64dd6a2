"""The window engine: whether an instant is allowed for a recipient under a ruleset, and the next opening.

A moment is allowed only if it is allowed in **every** candidate zone of the recipient under **every** applicable
rule. DST-correct by construction: each instant is converted to local wall time with ``zoneinfo`` and compared as
wall time; the next opening is found by searching forward over local days; no offsets are cached. A window edge
that falls in a spring-forward gap opens at the first instant that exists after it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays as holiday_data

from campaigns.windows.rulesets import DAYS, Rule, Ruleset, hhmm
from campaigns.windows.zones import Recipient

HOLD_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
"""Where a held event waits: it is never dispatched until someone fixes its time zone."""

SEARCH_DAYS = 15
"""How far ahead ``next_opening`` looks before giving up (the recipient is then held)."""


@functools.lru_cache(maxsize=256)
def _holiday_calendar(country: str, subdiv: str | None) -> holiday_data.HolidayBase:
    return holiday_data.country_holidays(country, subdiv=subdiv)


@functools.lru_cache(maxsize=1024)
def _tz(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True)
class Verdict:
    """Why one rule allows or blocks an instant in one zone (for ``campaigns windows check``)."""

    rule: Rule
    zone: str
    local: datetime
    allowed: bool
    why: str


def _evaluate(instant: datetime, zone: str, rule: Rule) -> Verdict:
    where = rule.zone or zone
    local = instant.astimezone(_tz(where))
    if rule.holidays is not None:
        name = _holiday_calendar(*rule.holidays).get(local.date())
        if name is not None:
            return Verdict(rule, where, local, False, f"closed on {name}")
    spans = rule.week[local.weekday()]
    if not spans:
        return Verdict(rule, where, local, False, f"closed on {DAYS[local.weekday()]}")
    seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    if any(start <= seconds < end for start, end in spans):
        return Verdict(rule, where, local, True, "inside the window")
    hours = ", ".join(f"{hhmm(a)}-{hhmm(b)}" for a, b in spans)
    return Verdict(rule, where, local, False, f"outside {hours}")


def verdicts(instant: datetime, recipient: Recipient, ruleset: Ruleset) -> list[Verdict]:
    """Every (rule, zone) evaluation that decides ``instant``; a rule with a fixed zone is evaluated once."""
    out: list[Verdict] = []
    for rule in ruleset.rules_for(recipient.states):
        for zone in [rule.zone] if rule.zone else recipient.zones:
            out.append(_evaluate(instant, zone, rule))
    return out


def is_allowed(instant: datetime, recipient: Recipient, ruleset: Ruleset) -> bool:
    """Allowed only if every applicable rule allows it in every candidate zone; no zone → never allowed."""
    if not ruleset.needs_zone:
        return True
    if not recipient.zones:
        return False
    return all(v.allowed for v in verdicts(instant, recipient, ruleset))


def _bisect(lo: datetime, hi: datetime, reached: Callable[[datetime], bool]) -> datetime:
    """The first whole second in ``(lo, hi]`` where ``reached`` becomes true (``reached(hi)`` must be true)."""
    low, high = int(lo.timestamp()), int(hi.timestamp()) + 1
    while high - low > 1:
        mid = (low + high) // 2
        if reached(datetime.fromtimestamp(mid, UTC)):
            high = mid
        else:
            low = mid
    return datetime.fromtimestamp(high, UTC)


def _wall_to_instant(day: date, seconds: int, tz: ZoneInfo) -> datetime:
    """The first instant whose local wall time is at or after ``day`` + ``seconds`` (a gap is skipped)."""
    naive = datetime.combine(day, time()) + timedelta(seconds=seconds)
    earliest = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if earliest.astimezone(tz).replace(tzinfo=None) == naive:
        return earliest
    # ``naive`` does not exist: it is in a spring-forward gap, which ends at the transition.
    lo, hi = sorted((naive.replace(tzinfo=tz, fold=1).astimezone(UTC), earliest))
    return _bisect(lo, hi, lambda t: t.astimezone(tz).replace(tzinfo=None) >= naive)


def _offset_differs(instant: datetime, *, tz: ZoneInfo, offset: timedelta | None) -> bool:
    return instant.astimezone(tz).utcoffset() != offset


def _transitions(tz: ZoneInfo, start: datetime, days: int) -> list[datetime]:
    """Instants in ``[start, start + days]`` where the zone's UTC offset changes (wall time jumps)."""
    found: list[datetime] = []
    step = timedelta(hours=12)
    t = start
    end = start + timedelta(days=days)
    while t < end:
        nxt = t + step
        before = t.astimezone(tz).utcoffset()
        if before != nxt.astimezone(tz).utcoffset():
            found.append(_bisect(t, nxt, functools.partial(_offset_differs, tz=tz, offset=before)))
        t = nxt
    return found


def next_opening(
    instant: datetime, recipient: Recipient, ruleset: Ruleset, *, horizon_days: int = SEARCH_DAYS
) -> datetime | None:
    """The first allowed instant at or after ``instant``; ``None`` when none exists within the horizon.

    The allowed set is an intersection of unions of local-time intervals, so its earliest point after
    ``instant`` is ``instant`` itself, the start of some rule's interval in some zone, or a DST transition
    (where wall time jumps). Only those candidates are checked, in order.
    """
    if is_allowed(instant, recipient, ruleset):
        return instant
    if not recipient.zones or not ruleset.needs_zone:
        return None
    candidates: set[datetime] = set()
    for rule in ruleset.rules_for(recipient.states):
        for zone_name in {rule.zone} if rule.zone else set(recipient.zones):
            tz = _tz(zone_name)
            first_day = instant.astimezone(tz).date()
            for offset in range(horizon_days + 1):
                day = first_day + timedelta(days=offset)
                for start, _ in rule.week[day.weekday()]:
                    opening = _wall_to_instant(day, start, tz)
                    if opening >= instant:
                        candidates.add(opening)
            candidates.update(t for t in _transitions(tz, instant, horizon_days + 1) if t >= instant)
    for candidate in sorted(candidates):
        if is_allowed(candidate, recipient, ruleset):
            return candidate
    return None


@functools.lru_cache(maxsize=4096)
def cached_next_opening(instant: datetime, recipient: Recipient, ruleset: Ruleset) -> datetime | None:
    """:func:`next_opening`, memoized: a claim batch defers many recipients who share zones at one instant."""
    return next_opening(instant, recipient, ruleset)
