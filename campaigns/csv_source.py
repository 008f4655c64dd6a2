"""Reading operators' call lists (CSV): encoding and delimiter detection, column mapping, row validation.

Pure parsing, no database: :func:`open_call_list` looks at a bounded prefix of the upload (encoding, delimiter,
header; header problems raise :class:`CsvFileError` at once) and returns a lazy iterator that streams the rest
with bounded memory, yielding a :class:`ParsedRow` per good row and one or more :class:`RowError` per bad row.
Problems that make the whole file unusable (binary data, undecodable bytes, over the size limit, a line or
record too long to be a call-list row) raise :class:`CsvFileError` from the iterator. Duplicates are not
detected here (the loader does that in the database).

Row numbers are the numbers a spreadsheet shows: the header is row 1, a record with quoted newlines is one row,
and blank lines count (they are skipped, not reported).

Phone numbers are normalized to E.164 with ``phonenumbers``; see :class:`PhoneNormalizer` for the exact fast
path that makes this affordable at import speed.
"""

from __future__ import annotations

import codecs
import csv
import importlib
import io
import re
import threading
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat, ValidationResult
from phonenumbers.phonemetadata import PhoneNumberDesc
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

sre_parser: Any = importlib.import_module("re._parser")
sre_constants: Any = importlib.import_module("re._constants")

__all__ = [
    "CANADIAN_PROVINCES",
    "PHONE_ALIASES",
    "US_STATES",
    "CsvFileError",
    "CsvLayout",
    "ParsedRow",
    "PhoneNormalizer",
    "RowError",
    "normalize_phone",
    "open_call_list",
]

PHONE_ALIASES: Final = ("phone", "phone_number", "to", "number", "telnyx_end_user_target")
SCHEDULED_AT: Final = "scheduled_at"
TIMEZONE: Final = "timezone"
STATE: Final = "state"
TEXT: Final = "text"
METADATA_PREFIX: Final = "metadata."
RESERVED_PREFIX: Final = "telnyx_"
DELIMITERS: Final = (",", ";", "\t")

US_STATES: Final = frozenset(
    (
        "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
        "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC",
        "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY",
        "AS", "GU", "MP", "PR", "VI",  # territories with NANP numbers
    )
)  # fmt: skip
CANADIAN_PROVINCES: Final = frozenset(("AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT"))
_STATE_CODES: Final = US_STATES | CANADIAN_PROVINCES

PROBE_BYTES: Final = 64 * 1024
"""First read; the header must be complete within ``MAX_HEADER_BYTES``."""
MAX_HEADER_BYTES: Final = 1024 * 1024
MAX_LINE_CHARS: Final = 1024 * 1024
"""A physical line longer than this is not a call-list row: file error (keeps memory bounded)."""
MAX_RECORD_CHARS: Final = 4 * 1024 * 1024
"""Likewise for one record spread over several lines by quoted newlines."""
MAX_REPORTED_VALUE: Final = 200
"""``RowError.value`` is cut to this many characters."""

_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
)
_UTF32_BOMS: Final = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
_TZ_EXCLUDED: Final = frozenset({"localtime", "posixrules", "Factory"})


# --- public types ------------------------------------------------------------------------------------------


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


# --- row-level reasons -------------------------------------------------------------------------------------

R_PHONE_MISSING: Final = "phone number is missing"
R_PHONE_NOT_A_NUMBER: Final = "not a phone number"
R_PHONE_NO_REGION: Final = "not in international format (+country code) and no default region is set"
R_PHONE_BAD_COUNTRY: Final = "unknown country calling code"
R_PHONE_TOO_SHORT: Final = "impossible number: too short"
R_PHONE_TOO_LONG: Final = "impossible number: too long"
R_PHONE_BAD_LENGTH: Final = "impossible number: wrong length for its country"
R_PHONE_LOCAL_ONLY: Final = "impossible number: too short (local number without area code)"
R_PHONE_INVALID: Final = "invalid number: not a valid number range for its country"
R_PHONE_EXTENSION: Final = "number has an extension, which cannot be dialed"
R_TIMEZONE: Final = "unknown time zone (expected an IANA name such as America/New_York)"
R_SCHEDULED_AT: Final = "not an ISO 8601 date and time (e.g. 2025-03-01T09:30:00-05:00)"
R_SCHEDULED_AT_RANGE: Final = "date and time out of range"
R_STATE: Final = "unknown state or province (expected a 2-letter US state or Canadian province code)"
R_UNNAMED: Final = "value in a column that has no header name"


def _r_field_count(got: int, want: int) -> str:
    return f"row has {got} field{'s' if got != 1 else ''}, the header has {want}"


# --- phone numbers -----------------------------------------------------------------------------------------


def _slow_normalize(value: str, region: str | None) -> tuple[str | None, str, tuple[int, str] | None]:
    """The reference: ``phonenumbers`` all the way. Returns (E.164 or None, reason, (country code, NSN))."""
    try:
        return _phonenumbers_verdict(value, region)
    except Exception:  # a library bug on one odd cell must not abort a million-row import
        return None, R_PHONE_NOT_A_NUMBER, None


def _phonenumbers_verdict(value: str, region: str | None) -> tuple[str | None, str, tuple[int, str] | None]:
    try:
        number = phonenumbers.parse(value, region)
    except NumberParseException as exc:
        kind = exc.error_type
        if kind == NumberParseException.INVALID_COUNTRY_CODE:
            if region is None and not value.lstrip().startswith(("+", "\uff0b")):
                return None, R_PHONE_NO_REGION, None
            return None, R_PHONE_BAD_COUNTRY, None
        if kind in (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD):
            return None, R_PHONE_TOO_SHORT, None
        if kind == NumberParseException.TOO_LONG:
            return None, R_PHONE_TOO_LONG, None
        return None, R_PHONE_NOT_A_NUMBER, None
    key = (int(number.country_code or 0), phonenumbers.national_significant_number(number))
    if number.extension:
        return None, R_PHONE_EXTENSION, key
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible != ValidationResult.IS_POSSIBLE:
        reason = {
            ValidationResult.INVALID_COUNTRY_CODE: R_PHONE_BAD_COUNTRY,
            ValidationResult.TOO_SHORT: R_PHONE_TOO_SHORT,
            ValidationResult.TOO_LONG: R_PHONE_TOO_LONG,
            ValidationResult.IS_POSSIBLE_LOCAL_ONLY: R_PHONE_LOCAL_ONLY,
        }.get(possible, R_PHONE_BAD_LENGTH)
        return None, reason, key
    if not phonenumbers.is_valid_number(number):
        return None, R_PHONE_INVALID, key
    return phonenumbers.format_number(number, PhoneNumberFormat.E164), "", key


class _Unsupported(Exception):
    pass


_DIGITS: Final = frozenset("0123456789")
_Path = tuple[frozenset[str], ...]


def _class_digits(items: list[tuple[Any, Any]]) -> frozenset[str]:
    found: set[str] = set()
    negate = False
    for op, arg in items:
        if op is sre_constants.NEGATE:
            negate = True
        elif op is sre_constants.LITERAL:
            found.add(chr(arg))
        elif op is sre_constants.RANGE:
            found.update(d for d in _DIGITS if arg[0] <= ord(d) <= arg[1])
        elif op is sre_constants.CATEGORY and arg is sre_constants.CATEGORY_DIGIT:
            found |= _DIGITS
        else:
            raise _Unsupported(f"{op} in a character class")
    found &= _DIGITS
    return frozenset(_DIGITS - found if negate else found)


def _concat(left: set[_Path], right: set[_Path], limit: int) -> set[_Path]:
    return {a + b for a in left for b in right if len(a) + len(b) <= limit}


def _expand_seq(items: Iterable[tuple[Any, Any]], limit: int) -> set[_Path]:
    out: set[_Path] = {()}
    for op, arg in items:
        out = _concat(out, _expand_item(op, arg, limit), limit)
        if not out:
            break
    return out


def _expand_item(op: Any, arg: Any, limit: int) -> set[_Path]:
    """Every way ``op`` can match a digit string of at most ``limit`` digits, as sequences of digit sets."""
    if op is sre_constants.LITERAL:
        char = chr(arg)
        return {(frozenset(char),)} if char in _DIGITS else set()
    if op is sre_constants.IN:
        digits = _class_digits(arg)
        return {(digits,)} if digits else set()
    if op is sre_constants.ANY:
        return {(_DIGITS,)}
    if op is sre_constants.SUBPATTERN:
        _group, add_flags, del_flags, sub = arg
        if add_flags or del_flags:
            raise _Unsupported("inline flags")
        return _expand_seq(sub.data, limit)
    if op is sre_constants.BRANCH:
        result: set[_Path] = set()
        for branch in arg[1]:
            result |= _expand_seq(branch.data, limit)
        return result
    if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT):
        low, high, sub = arg
        base = _expand_seq(sub.data, limit)
        if high is sre_constants.MAXREPEAT or high > limit + 1:
            high = limit + 1
        result = set()
        current: set[_Path] = {()}
        for count in range(high + 1):
            if count >= low:
                result |= current
            if count == high:
                break
            current = _concat(current, base, limit)
            if not current:
                break
        return result
    raise _Unsupported(str(op))


def _regex_paths(pattern: str, *, length: int, fullmatch: bool) -> set[_Path]:
    """``pattern`` on digit strings of ``length`` as a union of paths (digit sets, trailing any-digit dropped).

    A string ``s`` of ``length`` digits matches (``fullmatch``, or ``re.match`` at the start when not) exactly
    when, for some path ``p``, ``s[i] in p[i]`` for every ``i < len(p)``.
    """
    expanded = _expand_seq(sre_parser.parse(pattern).data, length)
    paths: set[_Path] = set()
    for seq in expanded:
        if fullmatch and len(seq) != length:
            continue
        end = len(seq)
        while end and seq[end - 1] == _DIGITS:
            end -= 1
        paths.add(seq[:end])
    return paths


class PhoneNormalizer:
    """``value`` → E.164, exactly as strict as ``phonenumbers.parse`` + ``is_valid_number``, but fast for NANP.

    ``phonenumbers`` takes ~15 µs per number (for +1 it tries the number against ~25 regions' patterns). The
    fast path handles the common shapes of North American numbers (``+12125550199``, ``+1 212-555-0199``, and
    with a US/CA default region ``(212) 555-0199``, ``212.555.0199``, ``1 212 555 0199``); everything else
    goes through ``phonenumbers``.

    Exactness argument. For country code 1 and a 10-digit national number ``n`` starting 2-9, all these
    shapes parse to (1, n) (no IDD, no national prefix to strip, no extension; verified on every cache miss).
    ``is_valid_number`` of (1, n) is a function of the outcomes of a fixed set of regexes on ``n``: every
    number-type pattern of every NANP region (full matches) and the regions' leading-digits patterns (matches
    at the start); lengths are fixed. Each regex is expanded (from its parse tree, the installed metadata)
    into paths of digit sets; a regex's outcome is constant over all numbers sharing a prefix ``u`` once
    every path is either no longer than ``u`` or already contradicted by ``u``. The shortest such prefix
    (at least 4 digits) is the cache key, and the cached answer is what ``phonenumbers`` said for the first
    number with that prefix (the reason for a rejection depends only on validity: the length is fixed). Keys
    of this kind never nest, so looking them up shortest first is unambiguous. If the metadata ever uses a
    regex feature the expansion does not understand, the fast path is disabled.
    """

    MIN_KEY = 4

    def __init__(self, default_region: str | None) -> None:
        region = default_region.upper() if default_region else None
        if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown default region {default_region!r}")
        self.region = region
        national = region in ("US", "CA")
        self._shape = re.compile(
            (r"(?:\+?1[ .-]?)?" if national else r"\+1[ .-]?")
            + r"(?:\(([2-9][0-9]{2})\) ?|([2-9][0-9]{2})[ .-]?)([0-9]{3})[ .-]?([0-9]{4})",
            re.ASCII,
        )
        self._cache: dict[str, str] = {}
        self._index = _nanp_index()

    @property
    def fast_path_enabled(self) -> bool:
        return self._index is not None

    def __call__(self, value: str) -> tuple[str | None, str]:
        """(E.164, "") or (None, reason). ``value`` is already stripped."""
        match = self._shape.fullmatch(value) if self._index is not None else None
        if match is None:
            e164, reason, _key = _slow_normalize(value, self.region)
            return e164, reason
        npa, npa2, nxx, line = match.groups()
        nsn = (npa or npa2) + nxx + line
        cache = self._cache
        found = cache.get(nsn[:4])
        if found is None:
            for size in range(5, 11):
                found = cache.get(nsn[:size])
                if found is not None:
                    break
            else:
                return self._miss(value, nsn)
        return ("+1" + nsn, "") if not found else (None, found)

    def _miss(self, value: str, nsn: str) -> tuple[str | None, str]:
        e164, reason, key = _slow_normalize(value, self.region)
        if key == (1, nsn) and (e164 is None or e164 == "+1" + nsn) and self._index is not None:
            self._cache[nsn[: _decision_depth(self._index, nsn, self.MIN_KEY)]] = reason
        return e164, reason


_NanpIndex = dict[str, list[_Path]]
_nanp_lock = threading.Lock()
_nanp_state: list[_NanpIndex | None] = []


def _build_nanp_index() -> _NanpIndex | None:
    """Paths of every regex that decides validity for +1, indexed by the 3-digit prefixes they survive."""
    paths: set[_Path] = set()
    try:
        for region in COUNTRY_CODE_TO_REGION_CODE[1]:
            metadata = PhoneMetadata.metadata_for_region(region)
            if metadata is None:
                return None
            for name in dir(metadata):
                value = getattr(metadata, name, None)
                if isinstance(value, PhoneNumberDesc) and value.national_number_pattern:
                    paths |= _regex_paths(value.national_number_pattern, length=10, fullmatch=True)
            if metadata.leading_digits:
                paths |= _regex_paths(metadata.leading_digits, length=10, fullmatch=False)
    except Exception:  # anything unexpected in the metadata: no fast path, phonenumbers for every number
        return None
    index: _NanpIndex = {}
    for path in paths:
        if len(path) <= 3:
            continue  # decided within 3 digits, below the minimum key length
        for a in path[0]:
            for b in path[1]:
                for c in path[2]:
                    index.setdefault(a + b + c, []).append(path)
    return index


def _nanp_index() -> _NanpIndex | None:
    with _nanp_lock:
        if not _nanp_state:
            _nanp_state.append(_build_nanp_index())
        return _nanp_state[0]


def _decision_depth(index: _NanpIndex, nsn: str, minimum: int) -> int:
    """The shortest prefix of ``nsn`` (at least ``minimum``) that decides every path."""
    depth = minimum
    for path in index.get(nsn[:3], ()):
        size = len(path)
        if size <= depth:
            continue
        pos = 3
        while pos < size and nsn[pos] in path[pos]:
            pos += 1
        decided = size if pos == size else pos + 1
        if decided > depth:
            depth = decided
    return depth


_normalizers: dict[str | None, PhoneNormalizer] = {}


def _normalizer(default_region: str | None) -> PhoneNormalizer:
    key = default_region.upper() if default_region else None
    found = _normalizers.get(key)
    if found is None:
        found = _normalizers[key] = PhoneNormalizer(key)
    return found


def normalize_phone(value: str, *, default_region: str | None = "US") -> tuple[str | None, str]:
    """``(E.164, "")`` for a valid number, else ``(None, reason)``. Same rules as the CSV import."""
    value = value.strip()
    if not value:
        return None, R_PHONE_MISSING
    return _normalizer(default_region)(value)


# --- other fields ------------------------------------------------------------------------------------------

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


def _cut(value: str) -> str:
    return value if len(value) <= MAX_REPORTED_VALUE else value[: MAX_REPORTED_VALUE - 1] + "…"


# --- header ------------------------------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    return name.strip().strip("\ufeff").strip()


@dataclass(frozen=True)
class _Columns:
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
    return repr(_cut(name))


def _quote_list(names: Iterable[str], limit: int = 12) -> str:
    items = [_q(n) for n in names]
    if len(items) > limit:
        items = [*items[:limit], f"… ({len(items) - limit} more)"]
    return ", ".join(items)


def _map_columns(raw: list[str]) -> _Columns:
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
        elif folded in (SCHEDULED_AT, TIMEZONE, STATE, TEXT):
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
    return _Columns(
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


def _is_blank(fields: list[str]) -> bool:
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
        if not _is_blank(fields):
            return fields, count, consumed
    return None


def _detect_header(text: str, at_eof: bool) -> tuple[str, list[str], int] | None:
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
            raise CsvFileError(_too_big(self._max))
        n = len(chunk)
        target[:n] = chunk
        return n


def _too_big(limit: int) -> str:
    return f"the file is larger than the limit of {limit:,} bytes"


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


def _binary_error(where: str) -> CsvFileError:
    return CsvFileError(f"the file contains binary data (a NUL byte {where}); expected a CSV text file")


def _decode_error(encoding: str, exc: UnicodeDecodeError, where: str) -> CsvFileError:
    label = {"utf-8": "UTF-8", "utf-16-le": "UTF-16 (little-endian)", "utf-16-be": "UTF-16 (big-endian)"}[encoding]
    bad = exc.object[exc.start : min(exc.end, exc.start + 4)]
    hint = "; save it as \u201cCSV UTF-8\u201d" if encoding == "utf-8" else ""
    return CsvFileError(f"the file is not valid {label} {where}: {exc.reason} (bytes {bad.hex(' ')}){hint}")


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
) -> tuple[CsvLayout, Iterator[ParsedRow | RowError]]:
    """Detect the layout from a prefix of ``data`` and return it with a lazy, streaming iterator over the rows.

    Raises :class:`CsvFileError` now for problems with the header or the start of the file, and from the
    iterator for problems found later (binary or undecodable data, size limit, absurdly long lines).
    ``default_region`` (ISO 3166 code, e.g. ``US``) is used for numbers written without ``+country code``;
    an unknown region is a ``ValueError`` (a settings problem, not a file problem).
    """
    phone = _normalizer(default_region)
    try:
        if data.seekable():
            here = data.tell()
            end = data.seek(0, io.SEEK_END)
            data.seek(here)
            if end - here > max_bytes:
                raise CsvFileError(_too_big(max_bytes))
    except (OSError, ValueError, AttributeError):
        pass

    raw = _read_exactly(data, PROBE_BYTES)
    at_eof = len(raw) < PROBE_BYTES
    while True:
        if len(raw) > max_bytes:
            raise CsvFileError(_too_big(max_bytes))
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
            raise _binary_error(f"at offset {bom + body.index(0)}")
        decoder = codecs.getincrementaldecoder(codec)("strict")
        try:
            text = decoder.decode(body, final=at_eof)
        except UnicodeDecodeError as exc:
            raise _decode_error(codec, exc, f"at byte offset {bom + exc.start}") from None
        if "\x00" in text:
            raise _binary_error("in the first rows")
        if not text.strip():
            if at_eof:
                raise CsvFileError("the file is empty: a header row is required")
            detected = None
        else:
            try:
                detected = _detect_header(text, at_eof)
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
    columns = _map_columns(header)
    layout = CsvLayout(
        encoding=label,
        delimiter=delimiter,
        columns=[n for n in columns.names],
        phone_column=columns.names[columns.phone],
    )
    source = _Source(raw[bom:], data, len(raw), max_bytes)
    stream = io.TextIOWrapper(
        io.BufferedReader(source, buffer_size=64 * 1024), encoding=codec, errors="strict", newline=""
    )
    return layout, _rows(stream, codec, delimiter, header_records, columns, phone)


def _rows(
    stream: io.TextIOWrapper,
    codec: str,
    delimiter: str,
    skip: int,
    columns: _Columns,
    phone: PhoneNormalizer,
) -> Iterator[ParsedRow | RowError]:
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
                raise _binary_error(f"in row {row_number + 1}")
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
    states = _STATE_CODES
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
                if not _is_blank(fields):
                    yield RowError(row_number, "", _cut(delimiter.join(fields)), _r_field_count(len(fields), width))
                continue
            raw_phone = fields[phone_i].strip()
            if not raw_phone:
                if _is_blank(fields):
                    continue
                errors = [RowError(row_number, phone_name, "", R_PHONE_MISSING)]
                e164 = None
            else:
                e164, reason = phone(raw_phone)
                errors = [] if e164 is not None else [RowError(row_number, phone_name, _cut(raw_phone), reason)]

            zone: str | None = None
            if tz_i is not None:
                value = fields[tz_i].strip()
                if value:
                    zone = zones.get(value.lower())
                    if zone is None:
                        errors.append(RowError(row_number, names[tz_i], _cut(value), R_TIMEZONE))
            when: datetime | None = None
            if sched_i is not None:
                value = fields[sched_i].strip()
                if value:
                    try:
                        when = parse_when(value, zone)
                    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
                        errors.append(RowError(row_number, names[sched_i], _cut(value), R_SCHEDULED_AT))
                    except OverflowError:
                        errors.append(RowError(row_number, names[sched_i], _cut(value), R_SCHEDULED_AT_RANGE))
            state: str | None = None
            if state_i is not None:
                value = fields[state_i].strip()
                if value:
                    state = value.upper()
                    if state not in states:
                        errors.append(RowError(row_number, names[state_i], _cut(value), R_STATE))
            for i in unnamed:
                if fields[i].strip():
                    errors.append(RowError(row_number, f"column {i + 1}", _cut(fields[i].strip()), R_UNNAMED))
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
            )
    except UnicodeDecodeError as exc:
        raise _decode_error(codec, exc, f"in or after row {row_number + 1}") from None
    except csv.Error as exc:
        raise CsvFileError(f"row {row_number + 1} cannot be read as CSV: {exc}") from None
