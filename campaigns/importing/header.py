"""The header row: which delimiter, which columns, which of them holds the phone number.

The delimiter is the one (of comma, semicolon, tab) whose first record names a phone column; headers match
after normalization (trim, case, spaces/dashes/dots → ``_``: ``Phone Number`` and `` PHONE-NUMBER `` both name
the phone column), or as the campaign's ``mapping`` says (:mod:`campaigns.mapping`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from campaigns.importing.call_list import (
    PHONE_ALIASES,
    CsvFileError,
    SettingsMismatch,
    cut,
)
from campaigns.importing.dates import parse_duration
from campaigns.mapping import (
    DROP,
    FIELD_TARGETS,
    METADATA_PREFIX,
    PHONE,
    RESERVED_PREFIX,
    SCHEDULED_AT,
    SCHEDULED_DATE,
    SCHEDULED_TIME,
    STATE,
    TEXT,
    TIMEZONE,
    ListSettings,
    clean_header,
    normalize_header,
    split_late_expression,
)
from campaigns.templates import Template, TemplateError, parse_template

DELIMITERS: Final = (",", ";", "\t")
KEY_PHONE: Final = -1
"""In :attr:`Columns.dedupe`: the row's number (E.164), not a field as written."""
KEY_WHEN: Final = -2
"""In :attr:`Columns.dedupe`: the row's due time as read (``scheduled_at``, or its date and time columns)."""

_clean_name = clean_header


@dataclass(frozen=True)
class Columns:
    """Where each field is in a record: indexes into the header (and so into every row of the same width)."""

    names: list[str]
    phone: int
    scheduled_at: int | None
    timezone: int | None
    state: int | None
    text: int | None
    metadata: list[tuple[int, str]]
    variables: list[tuple[int, str]]
    unnamed: list[int]
    scheduled_date: int | None = None
    scheduled_time: int | None = None
    assignments: tuple[tuple[str, str], ...] = ()
    """Each header and its target (``-``: dropped), in file order: what the dry run shows."""
    sent: tuple[str, ...] = ()
    """The variables sent to the provider."""
    template: Template | None = None
    """The campaign's SMS template, checked against this header."""
    date_order: str | None = None
    dedupe: tuple[int, ...] | None = None
    """The ``dedupe_key`` columns (indexes, or ``KEY_PHONE`` / ``KEY_WHEN``); ``None``: the phone alone."""
    late: LateRule | None = None
    """``send_now_if_before``'s columns, when that is the late policy."""


@dataclass(frozen=True)
class LateRule:
    """``send_now_if_before: EXPR`` resolved in a header: a late row is sent while now < its columns - offset."""

    expression: str
    columns: tuple[int, ...]
    """One date or date-time column, or a date column and a time column."""
    offset: timedelta


def _q(name: str) -> str:
    return repr(cut(name))


def _quote_list(names: Iterable[str], limit: int = 12) -> str:
    items = [_q(n) for n in names]
    if len(items) > limit:
        items = [*items[:limit], f"… ({len(items) - limit} more)"]
    return ", ".join(items)


def _default_target(name: str) -> str:
    """What a header is without a mapping: a field, ``metadata.<key>``, or a variable of its normalized name."""
    normalized = normalize_header(name)
    if normalized in PHONE_ALIASES:
        return PHONE
    if normalized in (SCHEDULED_AT, TIMEZONE, STATE, TEXT):
        return normalized
    if normalized.startswith(METADATA_PREFIX):
        key = clean_header(name)[len(METADATA_PREFIX) :].strip()  # the key as written, as before
        if not key:
            raise CsvFileError(f"column {_q(name)} has no key after {METADATA_PREFIX!r}")
        return METADATA_PREFIX + key
    if normalized.startswith(RESERVED_PREFIX):
        raise CsvFileError(
            f"column {_q(name)} is reserved: names starting with {RESERVED_PREFIX!r} cannot be used as variables"
        )
    return normalized


def _resolve(names: list[str], settings: ListSettings) -> dict[int, str]:
    """Each explicitly targeted column (``mapping``, then ``drop_columns``); an entry naming no header of the
    file raises :class:`SettingsMismatch` on its setting."""
    by_norm: dict[str, int] = {}
    for i, name in enumerate(names):
        if name:
            by_norm.setdefault(normalize_header(name), i)
    explicit: dict[int, str] = {}
    entries = (
        ("mapping", [(h, DROP if t is None else t) for h, t in settings.mapping.items()]),
        ("drop_columns", [(h, DROP) for h in settings.drop_columns]),
    )
    for setting, pairs in entries:
        missing = [header for header, _ in pairs if normalize_header(header) not in by_norm]
        if missing:
            found = _quote_list(n for n in names if n) or "none"
            raise SettingsMismatch(
                setting,
                f"{setting} names column {_quote_list(missing)}, which the file does not have (columns: {found})",
            )
        for header, target in pairs:
            explicit.setdefault(by_norm[normalize_header(header)], target)
    return explicit


def _named(name: str, names: list[str], targets: dict[int, str], setting: str) -> int:
    """The column ``name`` stands for in ``setting``: a target (``phone``, ``scheduled_at``, a variable name,
    ``metadata.<key>``) or a header as written or normalized. Raises :class:`SettingsMismatch` naming it."""
    wanted = normalize_header(name)
    if wanted in PHONE_ALIASES or wanted == PHONE:
        return KEY_PHONE
    if wanted == SCHEDULED_AT and any(t in (SCHEDULED_AT, SCHEDULED_DATE) for t in targets.values()):
        return KEY_WHEN
    for i, target in targets.items():
        if target == PHONE and normalize_header(names[i]) == wanted:
            return KEY_PHONE
        if target == name.strip() or normalize_header(target) == wanted:
            return i
    for i, target in targets.items():
        if normalize_header(names[i]) == wanted:
            return KEY_WHEN if target in (SCHEDULED_AT, SCHEDULED_DATE, SCHEDULED_TIME) else i
    known = _quote_list(t for t in targets.values()) or "none"
    raise SettingsMismatch(
        setting, f"{setting} names column {_q(name)}, which the file does not have (columns after mapping: {known})"
    )


def _dedupe_columns(settings: ListSettings, names: list[str], targets: dict[int, str]) -> tuple[int, ...] | None:
    if settings.dedupe_key is None:
        return None
    parts = tuple(_named(name, names, targets, "dedupe_key") for name in settings.dedupe_key)
    return None if parts == (KEY_PHONE,) else parts  # the phone alone is the default key


def _late_rule(settings: ListSettings, names: list[str], targets: dict[int, str]) -> LateRule | None:
    _policy, expression = settings.late
    if expression is None:
        return None
    words, offset = split_late_expression(expression)
    columns = tuple(_named(word, names, targets, "late_policy") for word in words)
    if any(c < 0 for c in columns):
        raise SettingsMismatch(
            "late_policy", f"late_policy {expression!r}: name the column(s) of the appointment, not the phone or the"
            " reminder's own scheduled_at"
        )  # fmt: skip
    try:
        delta = parse_duration(offset) if offset is not None else timedelta(0)
    except ValueError as exc:
        raise SettingsMismatch("late_policy", f"late_policy {expression!r}: {exc}") from None
    return LateRule(expression, columns, delta)


def map_columns(raw: list[str], settings: ListSettings | None = None, template: str | None = None) -> Columns:
    """Give each header its target (the ``settings``' mapping, else its normalized name); check the ``variables``
    allow-list and the SMS ``template`` against them. A header the file cannot be imported with raises
    ``CsvFileError`` (:class:`SettingsMismatch` when a setting does not fit the file)."""
    settings = settings or ListSettings()
    names = [_clean_name(n) for n in raw]
    explicit = _resolve(names, settings)
    fields: dict[str, list[int]] = {}
    metadata: list[tuple[int, str]] = []
    variables: list[tuple[int, str]] = []
    unnamed: list[int] = []
    assignments: list[tuple[str, str]] = []
    targets: dict[int, str] = {}
    owner: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            unnamed.append(i)
            continue
        target = explicit.get(i) or _default_target(name)
        assignments.append((name, target))
        if target == DROP:
            continue
        targets[i] = target
        if target != PHONE and target in owner:  # two phone columns get their own message below
            j = owner[target]
            what = "column" if target == normalize_header(names[j]) == normalize_header(name) else "target"
            raise CsvFileError(
                f"duplicate {what} {_q(name) if what == 'column' else repr(target)}: {_q(names[j])} (column {j + 1})"
                f" and {_q(name)} (column {i + 1}); map one of them to another name or to {DROP!r}"
            )
        owner[target] = i
        if target in FIELD_TARGETS:
            fields.setdefault(target, []).append(i)
        elif target.startswith(METADATA_PREFIX):
            metadata.append((i, target[len(METADATA_PREFIX) :]))
        else:
            variables.append((i, target))
    phones = fields.get(PHONE, [])
    if not phones:
        aliases = ", ".join(PHONE_ALIASES)
        found = _quote_list(n for n in names if n) or "none"
        raise CsvFileError(
            f"no phone column: expected one of {aliases} (after normalization: trim, case, spaces/dashes/dots → _;"
            f' found columns: {found}); or map one, e.g. --map \'Mobile=phone\' or "mapping": {{"Mobile": "phone"}}'
        )
    if len(phones) > 1:
        a, b = phones[0], phones[1]
        raise CsvFileError(
            f"more than one phone column: {_q(names[a])} (column {a + 1}) and {_q(names[b])} (column {b + 1});"
            f" map the other one to a variable name or to {DROP!r}"
        )
    has_date, has_time = SCHEDULED_DATE in fields, SCHEDULED_TIME in fields
    if has_date != has_time:
        raise SettingsMismatch("mapping", f"{SCHEDULED_DATE!r} and {SCHEDULED_TIME!r} go together: map both")
    if has_date and SCHEDULED_AT in fields:
        raise SettingsMismatch(
            "mapping", f"the file has a {SCHEDULED_AT!r} column and a date and a time column: map one of them to '-'"
        )
    variable_names = [name for _, name in variables]
    if settings.variables is None:
        sent = tuple(variable_names)
    else:
        unknown = [v for v in settings.variables if v not in variable_names]
        if unknown:
            raise SettingsMismatch(
                "variables",
                f"variables names {_quote_list(unknown)}, which no column of the file provides "
                f"(variables: {_quote_list(variable_names) or 'none'})",
            )
        sent = tuple(v for v in variable_names if v in settings.variables)
    checked: Template | None = None
    if template is not None:
        try:
            checked = parse_template(template, variable_names)
        except TemplateError as exc:
            raise SettingsMismatch("text", str(exc)) from None

    def one(target: str) -> int | None:
        found = fields.get(target)
        return found[0] if found else None

    return Columns(
        names=names,
        phone=phones[0],
        scheduled_at=one(SCHEDULED_AT),
        timezone=one(TIMEZONE),
        state=one(STATE),
        text=one(TEXT),
        metadata=metadata,
        variables=variables,
        unnamed=unnamed,
        scheduled_date=one(SCHEDULED_DATE),
        scheduled_time=one(SCHEDULED_TIME),
        assignments=tuple(assignments),
        sent=sent,
        template=checked,
        date_order=settings.date_order,
        dedupe=_dedupe_columns(settings, names, targets),
        late=_late_rule(settings, names, targets),
    )


def names_phone(settings: ListSettings | None) -> Callable[[str], bool]:
    """Whether a header names the phone column under ``settings`` (for delimiter detection)."""
    mapped = {normalize_header(h) for h, t in (settings.mapping if settings else {}).items() if t == PHONE}

    def check(field: str) -> bool:
        normalized = normalize_header(field)
        if normalized in mapped:
            return True
        if settings is not None and any(normalize_header(h) == normalized for h in settings.mapping):
            return False  # mapped to something else
        return normalized in PHONE_ALIASES

    return check


def is_blank(fields: list[str]) -> bool:
    """An empty spreadsheet row (only delimiters and spaces): skipped, never reported."""
    return all(not f.strip() for f in fields)


def _first_record(text: str, delimiter: str) -> tuple[list[str], int, int] | None:
    """(header fields, records up to and including it, chars consumed) — None if there is no header in text."""
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        for line in io.StringIO(text, newline=""):
            consumed += len(line)
            yield line

    reader = csv.reader(lines(), delimiter=delimiter, quotechar='"', skipinitialspace=True, strict=False)
    for count, fields in enumerate(reader, start=1):
        if not is_blank(fields):
            return fields, count, consumed
    return None


def detect_header(
    text: str, at_eof: bool, is_phone: Callable[[str], bool] | None = None
) -> tuple[str, list[str], int] | None:
    """(delimiter, header fields, records up to and including the header); None: need more text."""
    is_phone = is_phone or names_phone(None)
    best: tuple[int, int, str, list[str], int] | None = None
    fallback: tuple[str, list[str], int] | None = None
    for rank, delimiter in enumerate(DELIMITERS):
        found = _first_record(text, delimiter)
        if found is None:
            if not at_eof:
                return None
            continue
        fields, count, consumed = found
        if consumed >= len(text) and not at_eof:
            return None  # the header may continue past what we have
        has_phone = any(is_phone(f) for f in fields)
        if fallback is None:
            fallback = (delimiter, fields, count)
        if has_phone:
            score = (len(fields), -rank)
            if best is None or score > (best[0], best[1]):
                best = (len(fields), -rank, delimiter, fields, count)
    if best is not None:
        return best[2], best[3], best[4]
    if fallback is None:
        raise CsvFileError("the file is empty: a header row is required")
    # No delimiter gives a phone column: report with the delimiter that splits the header the most.
    candidates = []
    for delimiter in DELIMITERS:
        found = _first_record(text, delimiter)
        if found is not None:
            candidates.append((len(found[0]), delimiter, found[0], found[1]))
    candidates.sort(key=lambda c: c[0], reverse=True)
    _n, delimiter, fields, count = candidates[0]
    return delimiter, fields, count
