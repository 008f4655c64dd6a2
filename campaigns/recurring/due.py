"""Due expressions: when a row of a recurring definition's file is due.

``now``; ``COLUMN`` (a date-time column); ``COLUMN - 24h`` / ``COLUMN + 1d12h``; ``COLUMN 09:00 local`` (that day
at 09:00 in the row's zone) or ``COLUMN - 1d 18:30 America/Chicago``; ``DATE_COLUMN TIME_COLUMN [- 2h]`` (a date
column and a time column read together in the row's zone). Columns are named as in the file or normalized
(``appointment_date`` for ``Appointment Date``), or by their mapped name; a header with spaces may also be quoted
(``"Appointment Date" - 1d 18:00 local``). "local" is the row's ``timezone`` column, else the template's
``timezone``, else the definition's zone; the same zone reads date-times written without an offset.

Cells are read by :mod:`campaigns.importing.dates` (as campaign call lists are), in the definition's
``date_order``; without one, a date with slashes is read month first (``11/05/2026`` is November 5, as recurring
definitions always read it) and other year-last dates only when they cannot be misread.
"""

from __future__ import annotations

import re
import shlex
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from campaigns import windows
from campaigns.importing.dates import parse_date, parse_duration, parse_local_datetime, parse_time

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class DueRule:
    """When a row is due: at the run (``column is None``), or relative to a date/date-time column."""

    column: str | None
    offset: timedelta = timedelta(0)
    time_column: str | None = None
    """A column holding the time of day of ``column``'s date (``appointment_date appointment_time``)."""
    at: time | None = None
    """Wall-clock time on the (offset) day, in ``zone``."""
    zone: str | None = None
    """IANA zone of ``at``; ``None``: the row's local zone."""


def _looks_like_time(word: str) -> bool:
    """``9am``, ``14.30``: a time of day, not a column name (in a due expression it is written ``09:00``)."""
    try:
        parse_time(word)
    except ValueError:
        return word[:1].isdigit()
    return True


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
    time_column: str | None = None
    if rest and rest[0][:1] not in "+-" and _CLOCK.match(rest[0]) is None and not _looks_like_time(rest[0]):
        time_column, rest = rest[0], rest[1:]
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
    if rest and time_column is not None:
        raise ValueError(
            f"{expression!r}: after a date column and a time column only an offset may follow, e.g. "
            '"appointment_date appointment_time - 2h"; a header with spaces is written by its normalized name '
            "(appointment_date for 'Appointment Date') or in quotes"
        )
    if rest:
        clock = _CLOCK.match(rest[0])
        if clock is None or len(rest) != 2:
            raise ValueError(
                f"{expression!r}: expected COLUMN [TIME_COLUMN] [+|- DURATION] [HH:MM local|HH:MM ZONE], "
                'e.g. "appointment_at - 24h", "due_date 09:00 local" or "appointment_date appointment_time - 2h"'
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
    return DueRule(column=column, offset=offset, at=at, zone=zone, time_column=time_column)


R_WHEN = "is not a date or date-time (ISO 8601 such as 2026-11-22T14:30, or 11/22/2026 2:30 PM)"


def _order(text: str, date_order: str | None) -> str | None:
    """The date order a cell is read in: the definition's, else month first for a date with slashes (US)."""
    return date_order or ("mdy" if "/" in text.split(" ", 1)[0] else None)


def _date_only(text: str) -> bool:
    return " " not in text and "T" not in text.upper()


def parse_when(value: str, date_order: str | None = None) -> datetime | date:
    """A date or date-time cell: ISO 8601 (``2026-11-22``, ``2026-11-22 14:30``, with or without offset), or a
    date and a time as spreadsheets write them (``11/22/2026 2:30 PM``, ``22.11.26 14:30``; see the module
    docstring for the date order). Raises ValueError naming what is wrong (an ambiguous date says so)."""
    raw = value.strip()
    if not raw:
        raise ValueError("is empty")
    order = _order(raw, date_order)
    try:
        if _date_only(raw):
            return parse_date(raw, order)
        return parse_local_datetime(raw, order)
    except ValueError as exc:
        if str(exc).startswith("ambiguous"):
            raise
        raise ValueError(R_WHEN) from None


def local_instant(day: date, at: time, zone: str) -> datetime:
    """``day`` at wall time ``at`` in ``zone``, as UTC. A time in the spring-forward gap lands right after it;
    a repeated time (fall back) is its first occurrence (PEP 495 ``fold=0``)."""
    return datetime.combine(day, at, tzinfo=zoneinfo.ZoneInfo(zone)).astimezone(UTC)


class DueCellError(ValueError):
    """A cell of a date column and a time column that cannot be read; ``cell`` is 0 (the date) or 1 (the time)."""

    def __init__(self, cell: int, reason: str) -> None:
        super().__init__(reason)
        self.cell = cell


def due_time(
    rule: DueRule, value: str, zone: str, time_value: str | None = None, date_order: str | None = None
) -> datetime:
    """The due instant of one row given its cell ``value`` (and ``time_value``, the cell of the rule's time
    column) and its local ``zone``. Raises ValueError naming what is wrong."""
    tz = zoneinfo.ZoneInfo(zone)
    if rule.time_column is not None:
        day_text, clock_text = value.strip(), (time_value or "").strip()
        if not day_text or not clock_text:
            raise DueCellError(0 if not day_text else 1, "is empty: a date and a time are both needed")
        try:
            day = parse_date(day_text, _order(day_text, date_order))
        except ValueError as exc:
            raise DueCellError(0, str(exc)) from None
        try:
            clock = parse_time(clock_text)
        except ValueError as exc:
            raise DueCellError(1, str(exc)) from None
        return datetime.combine(day, clock, tz).astimezone(UTC) + rule.offset
    parsed = parse_when(value, date_order)
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
