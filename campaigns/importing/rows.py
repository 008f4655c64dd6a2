"""Rows of a call list: each record becomes a ``ParsedRow`` or one ``RowError`` per problem.

Row numbers are the numbers a spreadsheet shows: the header is row 1, a record with quoted newlines is one row,
and blank lines count (they are skipped, not reported). Phone numbers go through :mod:`campaigns.phones`;
time zones, date-times and states are checked here.
"""

from __future__ import annotations

import csv
import io
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Final

from campaigns.importing.call_list import (
    CsvFileError,
    ParsedRow,
    RowError,
    binary_error,
    cut,
    decode_error,
)
from campaigns.importing.header import Columns, is_blank
from campaigns.phones import R_PHONE_MISSING, PhoneNormalizer

MAX_LINE_CHARS: Final = 1024 * 1024
"""A physical line longer than this is not a call-list row: file error (keeps memory bounded)."""
MAX_RECORD_CHARS: Final = 4 * 1024 * 1024
"""Likewise for one record spread over several lines by quoted newlines."""

US_STATES: Final = frozenset(
    (
        "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
        "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC",
        "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY",
        "AS", "GU", "MP", "PR", "VI",  # territories with NANP numbers
    )
)  # fmt: skip
CANADIAN_PROVINCES: Final = frozenset(("AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT"))
STATE_CODES: Final = US_STATES | CANADIAN_PROVINCES
_TZ_EXCLUDED: Final = frozenset({"localtime", "posixrules", "Factory"})

# --- row-level reasons (phone reasons are in campaigns.phones) ---------------------------------------------

R_TIMEZONE: Final = "unknown time zone (expected an IANA name such as America/New_York)"
R_SCHEDULED_AT: Final = "not an ISO 8601 date and time (e.g. 2025-03-01T09:30:00-05:00)"
R_SCHEDULED_AT_RANGE: Final = "date and time out of range"
R_STATE: Final = "unknown state or province (expected a 2-letter US state or Canadian province code)"
R_UNNAMED: Final = "value in a column that has no header name"


def _r_field_count(got: int, want: int) -> str:
    return f"row has {got} field{'s' if got != 1 else ''}, the header has {want}"


# --- fields ------------------------------------------------------------------------------------------------

_tz_state: list[dict[str, str]] = []


def _timezones() -> dict[str, str]:
    """lower-case IANA name → canonical spelling."""
    if not _tz_state:
        names = zoneinfo.available_timezones() - _TZ_EXCLUDED
        _tz_state.append({name.lower(): name for name in sorted(names)})
    return _tz_state[0]


def _parse_when(value: str, zone: str | None) -> datetime:
    """ISO 8601 → aware UTC. Raises ValueError / OverflowError."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zoneinfo.ZoneInfo(zone) if zone else UTC)
    return parsed.astimezone(UTC)


# --- records ----------------------------------------------------------------------------------------------


def read_rows(
    stream: io.TextIOWrapper,
    codec: str,
    delimiter: str,
    skip: int,
    columns: Columns,
    phone: PhoneNormalizer,
) -> Iterator[ParsedRow | RowError]:
    """The records of ``stream`` after the first ``skip`` (the header and the blank lines before it).

    Raises ``CsvFileError`` for problems with the file as a whole (binary or undecodable data, a line or record
    too long to be a row, a quote left open at the end of the file).
    """
    pending = [0]
    row_number = 0
    ended = [False]

    def lines() -> Iterator[str]:
        readline = stream.readline
        budget = pending
        while True:
            line = readline(MAX_LINE_CHARS)
            if not line:
                ended[0] = True
                return
            size = len(line)
            if "\x00" in line:
                raise binary_error(f"in row {row_number + 1}")
            if size >= MAX_LINE_CHARS and line[-1] not in "\r\n":
                raise CsvFileError(f"row {row_number + 1} has a line longer than {MAX_LINE_CHARS:,} characters")
            budget[0] += size
            if budget[0] > MAX_RECORD_CHARS:
                raise CsvFileError(
                    f"row {row_number + 1} is longer than {MAX_RECORD_CHARS:,} characters (an unbalanced quote?)"
                )
            yield line

    names = columns.names
    width = len(names)
    phone_i = columns.phone
    phone_name = names[phone_i]
    sched_i = columns.scheduled_at
    tz_i = columns.timezone
    state_i = columns.state
    text_i = columns.text
    meta_cols = columns.metadata
    var_cols = columns.variables
    unnamed = columns.unnamed
    zones = _timezones() if tz_i is not None else {}
    states = STATE_CODES
    parse_when = _parse_when

    reader = csv.reader(lines(), delimiter=delimiter, quotechar='"', skipinitialspace=True, strict=False)
    try:
        for fields in reader:
            row_number += 1
            pending[0] = 0
            if ended[0]:
                # The reader asked for more lines to finish this record and there were none: a quoted field is
                # still open at the end of the file. Read leniently, it would swallow every row after its quote.
                raise CsvFileError(
                    f"row {row_number} opens a quoted field that is never closed: it runs to the end of the file"
                    " (an unbalanced quote?)"
                )
            if row_number <= skip:
                continue
            if len(fields) != width:
                if not is_blank(fields):
                    yield RowError(row_number, "", cut(delimiter.join(fields)), _r_field_count(len(fields), width))
                continue
            raw_phone = fields[phone_i].strip()
            if not raw_phone:
                if is_blank(fields):
                    continue
                errors = [RowError(row_number, phone_name, "", R_PHONE_MISSING)]
                e164 = None
            else:
                e164, reason = phone(raw_phone)
                errors = [] if e164 is not None else [RowError(row_number, phone_name, cut(raw_phone), reason)]

            zone: str | None = None
            if tz_i is not None:
                value = fields[tz_i].strip()
                if value:
                    zone = zones.get(value.lower())
                    if zone is None:
                        errors.append(RowError(row_number, names[tz_i], cut(value), R_TIMEZONE))
            when: datetime | None = None
            if sched_i is not None:
                value = fields[sched_i].strip()
                if value:
                    try:
                        when = parse_when(value, zone)
                    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
                        errors.append(RowError(row_number, names[sched_i], cut(value), R_SCHEDULED_AT))
                    except OverflowError:
                        errors.append(RowError(row_number, names[sched_i], cut(value), R_SCHEDULED_AT_RANGE))
            state: str | None = None
            if state_i is not None:
                value = fields[state_i].strip()
                if value:
                    state = value.upper()
                    if state not in states:
                        errors.append(RowError(row_number, names[state_i], cut(value), R_STATE))
            for i in unnamed:
                if fields[i].strip():
                    errors.append(RowError(row_number, f"column {i + 1}", cut(fields[i].strip()), R_UNNAMED))
            if errors or e164 is None:
                yield from errors
                continue
            text: str | None = None
            if text_i is not None:
                text = fields[text_i].strip() or None
            yield ParsedRow(
                row_number,
                e164,
                when,
                zone,
                state,
                text,
                {key: fields[i].strip() for i, key in meta_cols} if meta_cols else {},
                {key: fields[i].strip() for i, key in var_cols} if var_cols else {},
                source=dict(zip(names, fields, strict=True)),
            )
    except UnicodeDecodeError as exc:
        raise decode_error(codec, exc, f"in or after row {row_number + 1}") from None
    except csv.Error as exc:
        raise CsvFileError(f"row {row_number + 1} cannot be read as CSV: {exc}") from None
