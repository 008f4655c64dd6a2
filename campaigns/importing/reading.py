"""Reading operators' call lists (CSV): the entry point, and the bytes → text step (encoding detection, limits).

Pure parsing, no database: :func:`open_call_list` looks at a bounded prefix of the upload (encoding, delimiter,
header; header problems raise :class:`CsvFileError` at once) and returns a lazy iterator that streams the rest
with bounded memory, yielding a :class:`ParsedRow` per good row and one or more :class:`RowError` per bad row.
Problems that make the whole file unusable (binary data, undecodable bytes, over the size limit, a line or
record too long to be a call-list row) raise :class:`CsvFileError` from the iterator. Duplicates are not
detected here (the loader does that in the database).

The header is matched in :mod:`.header`, the rows are read in :mod:`.rows`, numbers are normalized by
:mod:`campaigns.phones`.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from typing import IO, Any, Final

from campaigns.importing.call_list import (
    CsvFileError,
    CsvLayout,
    ParsedRow,
    RowError,
    binary_error,
    decode_error,
    too_big,
)
from campaigns.importing.header import detect_header, map_columns, names_phone
from campaigns.importing.rows import read_rows
from campaigns.mapping import ListSettings
from campaigns.phones import phone_normalizer

PROBE_BYTES: Final = 64 * 1024
"""First read; the header must be complete within ``MAX_HEADER_BYTES``."""
MAX_HEADER_BYTES: Final = 1024 * 1024

_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
)
_UTF32_BOMS: Final = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


# --- bytes → text ------------------------------------------------------------------------------------------


class _Source(io.RawIOBase):
    """Replays the probed prefix, then the rest of the upload; enforces the size limit."""

    def __init__(self, head: bytes, stream: IO[bytes], consumed: int, max_bytes: int) -> None:
        super().__init__()
        self._head = head
        self._stream = stream
        self._total = consumed
        self._max = max_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        size = len(target)
        if self._head:
            n = min(size, len(self._head))
            target[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        chunk = self._stream.read(size)
        if not chunk:
            return 0
        self._total += len(chunk)
        if self._total > self._max:
            raise CsvFileError(too_big(self._max))
        n = len(chunk)
        target[:n] = chunk
        return n


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    parts: list[bytes] = []
    want = size
    while want > 0:
        chunk = stream.read(want)
        if not chunk:
            break
        parts.append(chunk)
        want -= len(chunk)
    return b"".join(parts)


def _looks_like_utf16(data: bytes) -> bool:
    sample = data[:4096]
    if len(sample) < 4:
        return False
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    half = len(sample) // 2
    return max(even, odd) > half * 0.4 and min(even, odd) < half * 0.05


# --- the entry point ---------------------------------------------------------------------------------------


def open_call_list(
    data: IO[bytes],
    *,
    default_region: str | None = "US",
    max_bytes: int = 2 * 1024**3,
    settings: ListSettings | None = None,
    template: str | None = None,
    default_zone: str | None = None,
    built_ins: dict[str, str] | None = None,
) -> tuple[CsvLayout, Iterator[ParsedRow | RowError]]:
    """Detect the layout from a prefix of ``data`` and return it with a lazy, streaming iterator over the rows.

    Raises :class:`CsvFileError` now for problems with the header or the start of the file, and from the
    iterator for problems found later (binary or undecodable data, size limit, absurdly long lines).
    ``default_region`` (ISO 3166 code, e.g. ``US``) is used for numbers written without ``+country code``;
    an unknown region is a ``ValueError`` (a settings problem, not a file problem).

    ``settings`` say which column is which (:class:`~campaigns.mapping.ListSettings`); ``template`` is the SMS
    text to check against the header (an unknown name raises :class:`SettingsMismatch` now) and render per row;
    ``default_zone`` reads date and time columns of rows whose zone is not otherwise known; ``built_ins`` are the
    values of Telnyx's system variables the template may use (``telnyx_agent_target``, the channel).
    """
    phone = phone_normalizer(default_region)
    try:
        if data.seekable():
            here = data.tell()
            end = data.seek(0, io.SEEK_END)
            data.seek(here)
            if end - here > max_bytes:
                raise CsvFileError(too_big(max_bytes))
    except (OSError, ValueError, AttributeError):
        pass

    raw = _read_exactly(data, PROBE_BYTES)
    at_eof = len(raw) < PROBE_BYTES
    while True:
        if len(raw) > max_bytes:
            raise CsvFileError(too_big(max_bytes))
        if not raw:
            raise CsvFileError("the file is empty: a header row is required")
        if raw.startswith(_UTF32_BOMS):
            raise CsvFileError("the file is UTF-32, which is not supported; save it as UTF-8 or UTF-16")
        label, codec, bom = "utf-8", "utf-8", 0
        for mark, name, codec_name in _BOMS:
            if raw.startswith(mark):
                label, codec, bom = name, codec_name, len(mark)
                break
        body = raw[bom:]
        if codec == "utf-8" and b"\x00" in body:
            if _looks_like_utf16(body):
                raise CsvFileError(
                    "the file looks like UTF-16 without a byte-order mark; save it as UTF-8, or UTF-16 with BOM"
                )
            raise binary_error(f"at offset {bom + body.index(0)}")
        decoder = codecs.getincrementaldecoder(codec)("strict")
        try:
            text = decoder.decode(body, final=at_eof)
        except UnicodeDecodeError as exc:
            raise decode_error(codec, exc, f"at byte offset {bom + exc.start}") from None
        if "\x00" in text:
            raise binary_error("in the first rows")
        if not text.strip():
            if at_eof:
                raise CsvFileError("the file is empty: a header row is required")
            detected = None
        else:
            try:
                detected = detect_header(text, at_eof, names_phone(settings))
            except csv.Error as exc:
                raise CsvFileError(f"the header row cannot be read as CSV: {exc}") from None
        if detected is not None:
            break
        if len(raw) >= MAX_HEADER_BYTES:
            raise CsvFileError(
                f"no complete header row in the first {MAX_HEADER_BYTES:,} bytes (a missing line break "
                "or an unbalanced quote?)"
            )
        want = min(len(raw), MAX_HEADER_BYTES - len(raw))
        more = _read_exactly(data, want)
        at_eof = len(more) < want
        raw += more

    delimiter, header, header_records = detected
    columns = map_columns(header, settings, template)
    layout = CsvLayout(
        encoding=label,
        delimiter=delimiter,
        columns=[n for n in columns.names],
        phone_column=columns.names[columns.phone],
        mapping=columns.assignments,
        variables=tuple(name for _, name in columns.variables),
        sent_variables=columns.sent,
    )
    source = _Source(raw[bom:], data, len(raw), max_bytes)
    stream = io.TextIOWrapper(
        io.BufferedReader(source, buffer_size=64 * 1024), encoding=codec, errors="strict", newline=""
    )
    return layout, read_rows(stream, codec, delimiter, header_records, columns, phone, default_zone, built_ins)
