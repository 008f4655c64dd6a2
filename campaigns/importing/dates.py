"""Dates and times as spreadsheets write them: ``2026-12-05``, ``12/05/2026``, ``5.12.26``, ``14:30``, ``2:30 PM``.

A date with slashes (or dots, or dashes) and the year last is read in the campaign's ``date_order`` (``mdy`` or
``dmy``); without one it is read only when it cannot be misread (a day over 12, or month and day equal), and
refused otherwise: a reminder on the wrong day is worse than a rejected row. Two-digit years are 20xx.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Final

_ISO_DATE: Final = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
_YEAR_LAST: Final = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{2}|\d{4})$")
_TIME: Final = re.compile(
    r"^(\d{1,2})(?:[:.](\d{2}))?(?:[:.](\d{2}))?\s*(?:(a|p)\.?\s*m\.?)?$",
    re.IGNORECASE,
)

_DURATION: Final = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

R_DATE: Final = "not a date (expected e.g. 2026-12-05 or 12/05/2026)"
R_TIME: Final = "not a time of day (expected e.g. 14:30 or 2:30 PM)"


def r_ambiguous(value: str) -> str:
    return f"ambiguous date {value!r}: month/day or day/month? set date_order (mdy or dmy; CLI --date-order)"


def parse_date(value: str, date_order: str | None) -> date:
    """One date; raises ValueError with the reason for the operator."""
    text = value.strip()
    iso = _ISO_DATE.match(text)
    try:
        if iso:
            return date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
        last = _YEAR_LAST.match(text)
        if last is None:
            return date.fromisoformat(text)  # 20261205 and the other ISO forms
        first, second, year = int(last.group(1)), int(last.group(2)), int(last.group(3))
        if len(last.group(3)) == 2:
            year += 2000
        order = date_order
        if order is None:
            if first > 12 >= second:
                order = "dmy"
            elif second > 12 >= first or first == second:
                order = "mdy"
            else:
                raise ValueError(r_ambiguous(text))
        month, day = (first, second) if order == "mdy" else (second, first)
        return date(year, month, day)
    except ValueError as exc:
        if str(exc).startswith("ambiguous"):
            raise
        raise ValueError(R_DATE) from None


def parse_time(value: str) -> time:
    """One time of day (24-hour, or 12-hour with AM/PM); raises ValueError with the reason."""
    match = _TIME.match(value.strip())
    if match is None:
        raise ValueError(R_TIME)
    hour, minute, second = int(match.group(1)), int(match.group(2) or 0), int(match.group(3) or 0)
    meridiem = (match.group(4) or "").lower()
    if meridiem:
        if not 1 <= hour <= 12:
            raise ValueError(R_TIME)
        hour = hour % 12 + (12 if meridiem == "p" else 0)
    elif match.group(2) is None:
        raise ValueError(R_TIME)  # a bare "14" is not a time
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(R_TIME)
    return time(hour, minute, second)


def parse_local_datetime(value: str, date_order: str | None) -> datetime:
    """A date-time written in one cell: ISO 8601 (offset kept), or a date, a space and a time (naive)."""
    text = value.strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    head, sep, tail = text.partition(" ")
    if not sep:
        raise ValueError("not a date and time (e.g. 2026-12-05T14:30:00-05:00 or 12/05/2026 2:30 PM)")
    return datetime.combine(parse_date(head, date_order), parse_time(tail))


def parse_duration(value: str) -> timedelta:
    """``24h``, ``1d12h``, ``90m``, ``2w`` → a timedelta. Raises ValueError."""
    match = _DURATION.match(value.strip().lower())
    if not value.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration (use w, d, h, m, s, e.g. 24h or 1d12h)")
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
