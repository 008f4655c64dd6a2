"""Calling windows: when a recipient may be contacted, in their own time zone(s).

This is the first slice of the window engine: rulesets ``none`` (no window, the Telnyx behaviour) and ``us``
(the federal TCPA window, 08:00-21:00 local time, in *every* candidate zone of the recipient). State-specific
rules, holidays and frequency caps are not implemented yet: ``us`` is the federal floor only.

DST-correct by construction: comparisons are on local wall time computed per instant with ``zoneinfo``; the
next opening is searched forward over local days; no offsets are cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones

HOLD_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
"""Where a held event waits: it is never dispatched until someone fixes its time zone."""


@dataclass(frozen=True)
class Ruleset:
    name: str
    opens: time | None
    closes: time | None
    citation: str

    @property
    def needs_zone(self) -> bool:
        return self.opens is not None


RULESETS: dict[str, Ruleset] = {
    "none": Ruleset("none", None, None, "no calling window (Telnyx behaviour)"),
    "us": Ruleset("us", time(8, 0), time(21, 0), "47 U.S.C. 227; 47 CFR 64.1200(c)(1): 8 a.m. to 9 p.m. local time"),
}

# Every IANA zone used in each US state or territory (a recipient known only by state gets all of them).
STATE_ZONES: dict[str, tuple[str, ...]] = {
    "AL": ("America/Chicago",), "AK": ("America/Anchorage", "America/Adak"), "AZ": ("America/Phoenix",),
    "AR": ("America/Chicago",), "CA": ("America/Los_Angeles",), "CO": ("America/Denver",),
    "CT": ("America/New_York",), "DE": ("America/New_York",), "DC": ("America/New_York",),
    "FL": ("America/New_York", "America/Chicago"), "GA": ("America/New_York",), "HI": ("Pacific/Honolulu",),
    "ID": ("America/Boise", "America/Los_Angeles"), "IL": ("America/Chicago",),
    "IN": ("America/Indiana/Indianapolis", "America/Chicago"), "IA": ("America/Chicago",),
    "KS": ("America/Chicago", "America/Denver"), "KY": ("America/New_York", "America/Chicago"),
    "LA": ("America/Chicago",), "ME": ("America/New_York",), "MD": ("America/New_York",),
    "MA": ("America/New_York",), "MI": ("America/Detroit", "America/Menominee"), "MN": ("America/Chicago",),
    "MS": ("America/Chicago",), "MO": ("America/Chicago",), "MT": ("America/Denver",),
    "NE": ("America/Chicago", "America/Denver"), "NV": ("America/Los_Angeles",), "NH": ("America/New_York",),
    "NJ": ("America/New_York",), "NM": ("America/Denver",), "NY": ("America/New_York",),
    "NC": ("America/New_York",), "ND": ("America/Chicago", "America/Denver"), "OH": ("America/New_York",),
    "OK": ("America/Chicago",), "OR": ("America/Los_Angeles", "America/Boise"), "PA": ("America/New_York",),
    "RI": ("America/New_York",), "SC": ("America/New_York",), "SD": ("America/Chicago", "America/Denver"),
    "TN": ("America/Chicago", "America/New_York"), "TX": ("America/Chicago", "America/Denver"),
    "UT": ("America/Denver",), "VT": ("America/New_York",), "VA": ("America/New_York",),
    "WA": ("America/Los_Angeles",), "WV": ("America/New_York",), "WI": ("America/Chicago",),
    "WY": ("America/Denver",), "PR": ("America/Puerto_Rico",), "VI": ("America/St_Thomas",),
    "GU": ("Pacific/Guam",), "AS": ("Pacific/Pago_Pago",), "MP": ("Pacific/Saipan",),
}  # fmt: skip


def is_timezone(name: object) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows."""
    if not isinstance(name, str) or not name:
        return False
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return False
    return True


def candidate_zones(
    *, phone: str | None, timezone: str | None = None, state: str | None = None, default_zone: str | None = None
) -> list[str]:
    """Where the recipient may be, most specific source first: row zone → state → number → campaign default."""
    if timezone:
        return [timezone]
    if state and state.upper() in STATE_ZONES:
        return list(STATE_ZONES[state.upper()])
    if phone and phone.startswith("+"):
        try:
            zones = [z for z in phone_timezones.time_zones_for_number(phonenumbers.parse(phone)) if z != "Etc/Unknown"]
        except phonenumbers.NumberParseException:
            zones = []
        if zones:
            return sorted(set(zones))
    return [default_zone] if default_zone else []


def _in_window(instant: datetime, zone: str, rules: Ruleset) -> bool:
    assert rules.opens is not None and rules.closes is not None
    local = instant.astimezone(ZoneInfo(zone)).time()
    return rules.opens <= local < rules.closes


def is_allowed(instant: datetime, zones: list[str], ruleset: str) -> bool:
    """Allowed only if allowed in every candidate zone; a recipient with no zone is never allowed."""
    rules = RULESETS[ruleset]
    if not rules.needs_zone:
        return True
    return bool(zones) and all(_in_window(instant, z, rules) for z in zones)


def next_opening(instant: datetime, zones: list[str], ruleset: str, *, horizon_days: int = 8) -> datetime | None:
    """The first allowed instant at or after ``instant``; ``None`` when none exists within the horizon.

    The allowed set is an intersection of daily intervals, so its earliest point is ``instant`` itself or one
    of the zones' local opening times: only those candidates are checked.
    """
    rules = RULESETS[ruleset]
    if is_allowed(instant, zones, ruleset):
        return instant
    if not zones or rules.opens is None:
        return None
    candidates: set[datetime] = set()
    for zone in zones:
        tz = ZoneInfo(zone)
        local_day = instant.astimezone(tz).date()
        for offset in range(horizon_days + 1):
            day = local_day + timedelta(days=offset)
            opening = datetime.combine(day, rules.opens, tzinfo=tz).astimezone(UTC)
            if opening >= instant:
                candidates.add(opening)
    for candidate in sorted(candidates):
        if is_allowed(candidate, zones, ruleset):
            return candidate
    return None
