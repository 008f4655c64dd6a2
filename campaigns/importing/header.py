"""The header row: which delimiter, which columns, which of them holds the phone number.

The delimiter is the one (of comma, semicolon, tab) whose first record names a phone column; headers match
after trimming and case folding (``Phone`` and `` PHONE_NUMBER `` both name the phone column).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from campaigns.importing.call_list import (
    METADATA_PREFIX,
    PHONE_ALIASES,
    RESERVED_PREFIX,
    SCHEDULED_AT,
    SPECIAL_COLUMNS,
    STATE,
    TEXT,
    TIMEZONE,
    CsvFileError,
    cut,
)

DELIMITERS: Final = (",", ";", "\t")


def _clean_name(name: str) -> str:
    return name.strip().strip("\ufeff").strip()


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


def _q(name: str) -> str:
    return repr(cut(name))


def _quote_list(names: Iterable[str], limit: int = 12) -> str:
    items = [_q(n) for n in names]
    if len(items) > limit:
        items = [*items[:limit], f"… ({len(items) - limit} more)"]
    return ", ".join(items)


def map_columns(raw: list[str]) -> Columns:
    """Give each header name its role; a header the file cannot be imported with raises ``CsvFileError``."""
    names = [_clean_name(n) for n in raw]
    seen: dict[str, int] = {}
    phones: list[int] = []
    special: dict[str, int] = {}
    metadata: list[tuple[int, str]] = []
    variables: list[tuple[int, str]] = []
    unnamed: list[int] = []
    for i, name in enumerate(names):
        if not name:
            unnamed.append(i)
            continue
        folded = name.casefold()
        if folded in seen:
            raise CsvFileError(f"duplicate column {_q(name)} (columns {seen[folded] + 1} and {i + 1})")
        seen[folded] = i
        if folded in PHONE_ALIASES:
            phones.append(i)
        elif folded in SPECIAL_COLUMNS:
            special[folded] = i
        elif folded.startswith(METADATA_PREFIX):
            key = name[len(METADATA_PREFIX) :].strip()
            if not key:
                raise CsvFileError(f"column {_q(name)} has no key after {METADATA_PREFIX!r}")
            metadata.append((i, key))
        elif folded.startswith(RESERVED_PREFIX):
            raise CsvFileError(
                f"column {_q(name)} is reserved: names starting with {RESERVED_PREFIX!r} cannot be used as variables"
            )
        else:
            variables.append((i, name))
    if not phones:
        aliases = ", ".join(PHONE_ALIASES)
        hint = ""
        for name in names:
            if re.sub(r"[\s\-]+", "_", name.casefold()) in PHONE_ALIASES:
                hint = f"; rename {_q(name)} to one of them"
                break
        found = _quote_list(n for n in names if n) or "none"
        raise CsvFileError(f"no phone column: expected one of {aliases} (found columns: {found}){hint}")
    if len(phones) > 1:
        a, b = phones[0], phones[1]
        raise CsvFileError(
            f"more than one phone column: {_q(names[a])} (column {a + 1}) and {_q(names[b])} (column {b + 1})"
        )
    return Columns(
        names=names,
        phone=phones[0],
        scheduled_at=special.get(SCHEDULED_AT),
        timezone=special.get(TIMEZONE),
        state=special.get(STATE),
        text=special.get(TEXT),
        metadata=metadata,
        variables=variables,
        unnamed=unnamed,
    )


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


def detect_header(text: str, at_eof: bool) -> tuple[str, list[str], int] | None:
    """(delimiter, header fields, records up to and including the header); None: need more text."""
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
        has_phone = any(_clean_name(f).casefold() in PHONE_ALIASES for f in fields)
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
