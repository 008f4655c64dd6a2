"""Rows of a call list: each record becomes a ``ParsedRow`` or one ``RowError`` per problem.

Row numbers are the numbers a spreadsheet shows: the header is row 1, a record with quoted newlines is one row,
and blank lines count (they are skipped, not reported). Phone numbers go through :mod:`campaigns.phones`;
time zones, date-times and states are checked here.
"""

from __future__ import annotations

import csv
import io
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Final

from campaigns.importing.call_list import (
    CsvFileError,
    ParsedRow,
    RowError,
    binary_error,
    cut,
    decode_error,
    key_text,
)
from campaigns.importing.dates import parse_date, parse_local_datetime, parse_time
from campaigns.importing.header import KEY_PHONE, KEY_WHEN, Columns, LateRule, is_blank
from campaigns.phones import R_PHONE_MISSING, PhoneNormalizer
from campaigns.templates import MissingValue, TemplateError, has_placeholders, parse_template
from campaigns.windows import resolve_zones

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
R_DATE_AND_TIME: Final = "a date and a time are both needed (or neither: the campaign's start)"


def _r_zone(found: list[str]) -> str:
    which = f"it may be in {', '.join(found)}" if found else "it is not known"
    return f"the row's time zone is needed to read its date and time, and {which}: add a timezone column"


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


def _parse_when(value: str, zone: str | None, date_order: str | None = None) -> datetime:
    """ISO 8601 (or a date, a space and a time) → aware UTC. Raises ValueError / OverflowError."""
    parsed = parse_local_datetime(value, date_order)
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
    default_zone: str | None = None,
    built_ins: Mapping[str, str] | None = None,
) -> Iterator[ParsedRow | RowError]:
    """The records of ``stream`` after the first ``skip`` (the header and the blank lines before it).

    ``default_zone`` (the campaign's ``timezone``) reads a date column and a time column when the row gives no
    zone and its number has no single one. The SMS template of ``columns`` is rendered with each row's variables
    and ``built_ins`` (Telnyx's system variables: agent target, channel; the row's number is added here).

    Raises ``CsvFileError`` for problems with the file as a whole (binary or undecodable data, a line or record
    too long to be a row, a quote left open at the end of the file).
    """
    pending = [0]
    physical = [0]
    """Physical lines read so far (a record spans several when a quoted field holds line breaks)."""
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
            physical[0] += 1
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
    date_i = columns.scheduled_date
    time_i = columns.scheduled_time
    date_order = columns.date_order
    template = columns.template
    key_columns = columns.dedupe
    late = columns.late
    variable_names = [name for _, name in var_cols]
    fixed = dict(built_ins or {})
    zones = _timezones() if tz_i is not None else {}
    states = STATE_CODES
    parse_when = _parse_when

    reader = csv.reader(lines(), delimiter=delimiter, quotechar='"', skipinitialspace=True, strict=False)
    last_line = 0
    try:
        for fields in reader:
            row_number += 1
            pending[0] = 0
            first_line, last_line = last_line + 1, physical[0]
            if ended[0]:
                # The reader asked for more lines to finish this record and there were none: a quoted field is
                # still open at the end of the file. Read leniently, it would swallow every row after its quote.
                raise CsvFileError(
                    f"row {row_number} opens a quoted field that is never closed: it runs to the end of the file"
                    " (an unbalanced quote?)"
                )
            if row_number <= skip:
                continue
            if last_line > first_line:
                _check_not_glued(fields, width, phone_i, names, delimiter, (row_number, first_line, last_line))
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
                        when = parse_when(value, zone, date_order)
                    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
                        reason = str(exc) if str(exc).startswith("ambiguous") else R_SCHEDULED_AT
                        errors.append(RowError(row_number, names[sched_i], cut(value), reason))
                    except OverflowError:
                        errors.append(RowError(row_number, names[sched_i], cut(value), R_SCHEDULED_AT_RANGE))
            state: str | None = None
            if state_i is not None:
                value = fields[state_i].strip()
                if value:
                    state = value.upper()
                    if state not in states:
                        errors.append(RowError(row_number, names[state_i], cut(value), R_STATE))
            if date_i is not None and time_i is not None and e164 is not None:
                row_state = fields[state_i].strip() if state_i is not None else None
                when = _date_and_time(
                    row_number, names, fields, (date_i, time_i), date_order, errors, e164, zone, row_state, default_zone
                )
            for i in unnamed:
                if fields[i].strip():
                    errors.append(RowError(row_number, f"column {i + 1}", cut(fields[i].strip()), R_UNNAMED))
            if errors or e164 is None:
                yield from errors
                continue
            variables = {key: fields[i].strip() for i, key in var_cols} if var_cols else {}
            text: str | None = None
            if text_i is not None:
                text = fields[text_i].strip() or None
            try:
                if text is not None and has_placeholders(text):
                    values = {**fixed, "telnyx_end_user_target": e164, **variables}
                    text = parse_template(text, variable_names).render(values)
                elif text is None and template is not None:
                    values = {**fixed, "telnyx_end_user_target": e164, **variables} if template.names else variables
                    text = template.render(values)
            except MissingValue as exc:
                yield RowError(row_number, _column_of(exc.name, var_cols, names), "", str(exc))
                continue
            except TemplateError as exc:
                yield RowError(row_number, names[text_i] if text_i is not None else "text", cut(text or ""), str(exc))
                continue
            dedupe: str | None = None
            if key_columns is not None:
                dedupe = key_text(
                    [
                        e164 if i == KEY_PHONE else (when.isoformat() if when else "") if i == KEY_WHEN
                        else fields[i].strip()
                        for i in key_columns
                    ]
                )  # fmt: skip
            send_before, send_before_error = None, None
            if late is not None:
                row_state = fields[state_i].strip() if state_i is not None else None
                zones_of = (e164, zone, row_state, default_zone)
                send_before, send_before_error = _send_before(late, names, fields, date_order, zones_of)
            yield ParsedRow(
                row_number,
                e164,
                when,
                zone,
                state,
                text,
                {key: fields[i].strip() for i, key in meta_cols} if meta_cols else {},
                variables,
                dedupe,
                send_before,
                send_before_error,
                source=dict(zip(names, fields, strict=True)),
            )
    except UnicodeDecodeError as exc:
        raise decode_error(codec, exc, f"in or after row {row_number + 1}") from None
    except csv.Error as exc:
        raise CsvFileError(f"row {row_number + 1} cannot be read as CSV: {exc}") from None


_PHONE_LIKE: Final = re.compile(r"^\+?[\d\s().\-]{7,}$")


def _phone_like(value: str) -> bool:
    """Written like a phone number: digits (7 or more) and the usual punctuation, nothing else."""
    text = value.strip()
    return bool(_PHONE_LIKE.match(text)) and sum(c.isdigit() for c in text) >= 7


def _check_not_glued(
    fields: list[str], width: int, phone_i: int, names: list[str], delimiter: str, where: tuple[int, int, int]
) -> None:
    """Refuse a record whose quoted field swallowed what look like whole rows (a stray quote, issue 19).

    A quoted field may hold line breaks (an address). Each line of such a value after its first is read as CSV
    on its own; the last one together with the fields that follow the value in the record. A line that makes a
    full row of the header's width with a phone-like value at the phone column's position is another record
    glued in by an unbalanced quote: the whole file is refused, naming the physical lines, rather than sending
    those people's data as one row's value (or importing the rows around it as if nothing was missing)."""
    row_number, first_line, last_line = where
    line = first_line
    for j, value in enumerate(fields):
        parts_of_value = value.splitlines()
        for k, text in enumerate(parts_of_value[1:], start=1):
            parts = next(csv.reader([text], delimiter=delimiter, skipinitialspace=True, strict=False), [])
            tail = len(fields) - j - 1 if k == len(parts_of_value) - 1 else 0
            if len(parts) + tail == width and phone_i < len(parts) and _phone_like(parts[phone_i]):
                column = names[j] if j < len(names) and names[j] else f"column {j + 1}"
                raise CsvFileError(
                    f"row {row_number}: a quoted field in column {column!r} runs from line {first_line} to line "
                    f"{last_line} and holds what looks like a whole row (line {line + k}: {cut(text)!r}): an "
                    f"unbalanced quote? Nothing was imported, neither row {row_number} nor the rows inside it; "
                    'close the quote (a quote inside a value is written twice: "") and upload the file again'
                )
        line += len(parts_of_value) - 1 if parts_of_value else 0


def _column_of(variable: str, var_cols: list[tuple[int, str]], names: list[str]) -> str:
    """The header a variable comes from (for a row error), or the variable's own name."""
    for i, key in var_cols:
        if key == variable:
            return names[i]
    return variable


def _date_and_time(
    row_number: int,
    names: list[str],
    fields: list[str],
    where: tuple[int, int],
    date_order: str | None,
    errors: list[RowError],
    phone: str,
    zone: str | None,
    state: str | None,
    default_zone: str | None,
) -> datetime | None:
    """A date column and a time column read together in the row's zone (aware UTC); problems go to ``errors``."""
    date_i, time_i = where
    day_text, clock_text = fields[date_i].strip(), fields[time_i].strip()
    if not day_text and not clock_text:
        return None
    if not day_text or not clock_text:
        empty = date_i if not day_text else time_i
        errors.append(RowError(row_number, names[empty], "", R_DATE_AND_TIME))
        return None
    try:
        day = parse_date(day_text, date_order)
    except ValueError as exc:
        errors.append(RowError(row_number, names[date_i], cut(day_text), str(exc)))
        return None
    try:
        clock = parse_time(clock_text)
    except ValueError as exc:
        errors.append(RowError(row_number, names[time_i], cut(clock_text), str(exc)))
        return None
    found, _source = resolve_zones(phone=phone, timezone=zone, state=state, default_zone=default_zone)
    if len(found) != 1:
        errors.append(RowError(row_number, names[date_i], cut(f"{day_text} {clock_text}"), _r_zone(found)))
        return None
    return datetime.combine(day, clock, tzinfo=zoneinfo.ZoneInfo(found[0])).astimezone(UTC)


def _send_before(
    rule: LateRule,
    names: list[str],
    fields: list[str],
    date_order: str | None,
    zones_of: tuple[str, str | None, str | None, str | None],
) -> tuple[datetime | None, str | None]:
    """``send_now_if_before``'s instant for one row (aware UTC), or why it cannot be read.

    One column: a date-time (ISO 8601, or a date, a space and a time), or a date alone (its start: a late row
    is sent only while the day has not begun); two columns: a date and a time. Read in the row's zone unless the
    value has an offset; then the rule's offset (``- 2h``) is applied."""
    texts = [fields[i].strip() for i in rule.columns]
    label = " ".join(names[i] for i in rule.columns)
    if not all(texts):
        return None, f"late_policy send_now_if_before: no value in {label!r}"
    try:
        if len(texts) == 2:
            moment = datetime.combine(parse_date(texts[0], date_order), parse_time(texts[1]))
        else:
            try:
                moment = parse_local_datetime(texts[0], date_order)
            except ValueError:
                moment = datetime.combine(parse_date(texts[0], date_order), datetime.min.time())
    except ValueError as exc:
        return None, f"late_policy send_now_if_before: {label} {' '.join(texts)!r}: {exc}"
    except OverflowError:
        return None, f"late_policy send_now_if_before: {label}: {R_SCHEDULED_AT_RANGE}"
    if moment.tzinfo is None:
        phone, zone, state, default_zone = zones_of
        found, _source = resolve_zones(phone=phone, timezone=zone, state=state, default_zone=default_zone)
        if len(found) != 1:
            return None, f"late_policy send_now_if_before: {_r_zone(found)}"
        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(found[0]))
    try:
        return (moment - rule.offset).astimezone(UTC), None
    except OverflowError:
        return None, f"late_policy send_now_if_before: {label}: {R_SCHEDULED_AT_RANGE}"
