"""What reading a call list produces: good rows, row problems, the detected layout and file-level errors.

Also the names the format gives meaning to (the phone column and its aliases, the special columns, the
``metadata.`` and reserved ``telnyx_`` prefixes) and the messages of file-level errors, shared by the header,
row and byte readers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

PHONE_ALIASES: Final = ("phone", "phone_number", "to", "number", "telnyx_end_user_target")
SCHEDULED_AT: Final = "scheduled_at"
TIMEZONE: Final = "timezone"
STATE: Final = "state"
TEXT: Final = "text"
SPECIAL_COLUMNS: Final = (SCHEDULED_AT, TIMEZONE, STATE, TEXT)
"""Columns that set an event field; every other named column is a variable or ``metadata.<key>``."""
METADATA_PREFIX: Final = "metadata."
RESERVED_PREFIX: Final = "telnyx_"

MAX_REPORTED_VALUE: Final = 200
"""``RowError.value`` is cut to this many characters."""


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
    metadata: dict[str, str]
    """``metadata.<key>`` columns → ``conversation_metadata``."""
    variables: dict[str, str]
    """Every other named column → ``dynamic_variables``."""
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
