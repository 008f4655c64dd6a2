"""Due expressions: when a row of a recurring definition's file is due.

``now``; ``COLUMN`` (a date-time column); ``COLUMN - 24h`` / ``COLUMN + 1d12h``; ``COLUMN 09:00 local`` (that day
at 09:00 in the row's zone) or ``COLUMN - 1d 18:30 America/Chicago``. "local" is the row's ``timezone`` column,
else the template's ``timezone``, else the definition's zone; the same zone reads date-times written without an
offset.
"""

from __future__ import annotations

import re
import shlex
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from campaigns import windows
from campaigns.importing.dates import parse_duration

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class DueRule:
    """When a row is due: at the run (``column is None``), or relative to a date/date-time column."""

    column: str | None
    offset: timedelta = timedelta(0)
    at: time | None = None
    """Wall-clock time on the (offset) day, in ``zone``."""
    zone: str | None = None
    """IANA zone of ``at``; ``None``: the row's local zone."""


def parse_due(expression: object) -> DueRule:
    """Parse a due expression (see the module docstring). Raises ValueError with a message for the operator."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError('is required: "now", or a column with an optional offset, e.g. "appointment_at - 24h"')
    try:
        tokens = shlex.split(expression)
    except ValueError as exc:
        raise ValueError(f"{expression!r} cannot be read: {exc}") from None
    if len(tokens) == 1 and tokens[0].lower() == "now":
        return DueRule(column=None)
    column, rest = tokens[0], tokens[1:]
    offset = timedelta(0)
    if rest and rest[0][:1] in "+-":
        sign = -1 if rest[0][0] == "-" else 1
        if len(rest[0]) > 1:
            amount, rest = rest[0][1:], rest[1:]
        elif len(rest) > 1:
            amount, rest = rest[1], rest[2:]
        else:
            raise ValueError(f"{expression!r}: a duration must follow {rest[0]!r}, e.g. 24h")
        offset = sign * parse_duration(amount)
    at: time | None = None
    zone: str | None = None
    if rest:
        clock = _CLOCK.match(rest[0])
        if clock is None or len(rest) != 2:
            raise ValueError(
                f"{expression!r}: expected COLUMN [+|- DURATION] [HH:MM local|HH:MM ZONE], "
                'e.g. "appointment_at - 24h" or "due_date 09:00 local"'
            )
        at = time(int(clock.group(1)), int(clock.group(2)))
        if rest[1].lower() != "local":
            if not windows.is_timezone(rest[1]):
                raise ValueError(f"{expression!r}: {rest[1]!r} is not 'local' or an IANA time zone")
            zone = rest[1]
        if offset % timedelta(days=1):
            raise ValueError(f"{expression!r}: with a time of day the offset must be whole days, e.g. - 1d")
    if not column or column[:1] in "+-":
        raise ValueError(f"{expression!r}: the first word must be a column name or 'now'")
    return DueRule(column=column, offset=offset, at=at, zone=zone)


_US_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y")


def parse_when(value: str) -> datetime | date:
    """A date or date-time cell: ISO 8601 (``2026-11-22``, ``2026-11-22 14:30``, with or without offset) or US
    ``11/22/2026 2:30 PM``. Raises ValueError."""
    raw = value.strip()
    if not raw:
        raise ValueError("is empty")
    try:
        if len(raw) == 10 and raw[4] == "-":
            return date.fromisoformat(raw)
        return datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        pass
    for fmt in _US_FORMATS:
        try:
            parsed = datetime.strptime(raw, fmt)  # noqa: DTZ007 (naive on purpose: read in the row's zone below)
        except ValueError:
            continue
        return parsed.date() if fmt == "%m/%d/%Y" else parsed
    raise ValueError("is not a date or date-time (ISO 8601 such as 2026-11-22T14:30, or 11/22/2026 2:30 PM)")


def local_instant(day: date, at: time, zone: str) -> datetime:
    """``day`` at wall time ``at`` in ``zone``, as UTC. A time in the spring-forward gap lands right after it;
    a repeated time (fall back) is its first occurrence (PEP 495 ``fold=0``)."""
    return datetime.combine(day, at, tzinfo=zoneinfo.ZoneInfo(zone)).astimezone(UTC)


def due_time(rule: DueRule, value: str, zone: str) -> datetime:
    """The due instant of one row given its cell ``value`` and its local ``zone``. Raises ValueError."""
    parsed = parse_when(value)
    tz = zoneinfo.ZoneInfo(zone)
    if rule.at is not None:
        day = parsed.astimezone(tz).date() if isinstance(parsed, datetime) and parsed.tzinfo else parsed
        if isinstance(day, datetime):
            day = day.date()
        return local_instant(day + rule.offset, rule.at, rule.zone or zone)
    if isinstance(parsed, datetime):
        instant = parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
    else:
        instant = datetime.combine(parsed, time(0), tzinfo=tz)
    return instant.astimezone(UTC) + rule.offset
