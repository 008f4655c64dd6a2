"""What reading a call list produces: good rows, row problems, the detected layout and file-level errors.

Also the names the format gives meaning to (the phone column and its aliases, the special columns, the
``metadata.`` and reserved ``telnyx_`` prefixes) and the messages of file-level errors, shared by the header,
row and byte readers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from campaigns.mapping import (
    METADATA_PREFIX,
    PHONE_ALIASES,
    RESERVED_PREFIX,
    SCHEDULED_AT,
    STATE,
    TEXT,
    TIMEZONE,
)

__all__ = [
    "METADATA_PREFIX",
    "PHONE_ALIASES",
    "RESERVED_PREFIX",
    "SCHEDULED_AT",
    "SPECIAL_COLUMNS",
    "STATE",
    "TEXT",
    "TIMEZONE",
    "CsvFileError",
    "CsvLayout",
    "ParsedRow",
    "RowError",
    "SettingsMismatch",
    "cut",
    "key_text",
]

SPECIAL_COLUMNS: Final = (SCHEDULED_AT, TIMEZONE, STATE, TEXT)
"""Columns that set an event field; every other named column is a variable or ``metadata.<key>``."""

MAX_REPORTED_VALUE: Final = 200
"""``RowError.value`` is cut to this many characters."""
MAX_KEY_CHARS: Final = 512
"""A dedupe key longer than this is kept as its SHA-256."""


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """One good row, ready to become a scheduled event."""

    row_number: int
    phone: str
    """E.164."""
    scheduled_at: datetime | None
    """Aware, UTC. ``None``: the campaign's start. A naive value was read in the row's ``timezone`` (else UTC)."""
    timezone: str | None
    """Canonical IANA name."""
    state: str | None
    """Two upper-case letters: a US state, DC, a US territory or a Canadian province/territory."""
    text: str | None
    """The text column, or the campaign's template rendered with the row (SMS); checked, never half-rendered."""
    metadata: dict[str, str]
    """``metadata.<key>`` columns → ``conversation_metadata``."""
    variables: dict[str, str]
    """Every variable column, by its (mapped or normalized) name; only the layout's ``sent_variables`` go to the
    provider as ``dynamic_variables``."""
    dedupe: str | None = None
    """The row's ``dedupe_key`` values (:func:`key_text`); ``None``: the campaign dedupes by phone alone."""
    send_before: datetime | None = None
    """Under ``late_policy: send_now_if_before``: the instant (aware, UTC) before which a late row is still sent."""
    send_before_error: str | None = None
    """Why ``send_before`` could not be read from the row (the late row is then skipped, with this reason)."""
    source: dict[str, str] = field(default_factory=dict, compare=False)
    """The row as written, header → value, every column: kept for the export (``source_values``), never sent."""


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem with one row. ``column`` is the header name, or ``""`` when no single column is at fault."""

    row_number: int
    column: str
    value: str
    reason: str


class CsvFileError(Exception):
    """The file as a whole cannot be imported; nothing from it should be created. ``str()`` is for the operator."""


class SettingsMismatch(CsvFileError):
    """The file and a campaign setting do not fit (``setting``: ``text``, ``mapping``, ``variables``, …): a
    template naming a column the file lacks, a mapping naming a header it does not have."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class CsvLayout:
    """What was detected.

    ``encoding``: ``utf-8``, ``utf-8-sig`` (UTF-8 with BOM), ``utf-16-le`` or ``utf-16-be`` (both with BOM).
    ``columns``: the header names, trimmed, in file order. ``phone_column``: the one among them holding numbers.
    """

    encoding: str
    delimiter: str
    columns: list[str]
    phone_column: str
    mapping: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    """Each header and what it became (a target of :mod:`campaigns.mapping`; ``-``: dropped), in file order."""
    variables: tuple[str, ...] = field(default=(), compare=False)
    """Every variable the rows carry (usable in the SMS template), in file order."""
    sent_variables: tuple[str, ...] = field(default=(), compare=False)
    """Those sent to the provider as ``dynamic_variables`` (the ``variables`` allow-list, else all)."""


def key_text(values: list[str]) -> str:
    """A dedupe key as stored: the values as JSON, or ``sha256:<hex>`` of that when it is long."""
    key = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    if len(key) > MAX_KEY_CHARS:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def cut(value: str) -> str:
    """``value`` as a report shows it: at most ``MAX_REPORTED_VALUE`` characters."""
    return value if len(value) <= MAX_REPORTED_VALUE else value[: MAX_REPORTED_VALUE - 1] + "…"


# --- file-level errors found while decoding ----------------------------------------------------------------


def too_big(limit: int) -> str:
    return f"the file is larger than the limit of {limit:,} bytes"


def binary_error(where: str) -> CsvFileError:
    return CsvFileError(f"the file contains binary data (a NUL byte {where}); expected a CSV text file")


def decode_error(encoding: str, exc: UnicodeDecodeError, where: str) -> CsvFileError:
    label = {"utf-8": "UTF-8", "utf-16-le": "UTF-16 (little-endian)", "utf-16-be": "UTF-16 (big-endian)"}[encoding]
    bad = exc.object[exc.start : min(exc.end, exc.start + 4)]
    hint = "; save it as \u201cCSV UTF-8\u201d" if encoding == "utf-8" else ""
    return CsvFileError(f"the file is not valid {label} {where}: {exc.reason} (bytes {bad.hex(' ')}){hint}")
