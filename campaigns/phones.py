"""Phone numbers: normalization to E.164 and validation, for CSV import, the do-not-contact list and the API.

Two strictnesses, one set of rules:

- :func:`normalize_phone` (and :class:`PhoneNormalizer`, its fast form) is what a call list gets: the number
  must be *valid* (in an assigned range for its country), exactly as ``phonenumbers.parse`` +
  ``is_valid_number`` decide, and an invalid one is a reason, not an exception (a million-row import reports
  rows, it does not stop). See :class:`PhoneNormalizer` for the exact fast path that makes this affordable at
  import speed.
- :func:`to_e164` is what the do-not-contact list and the API's number fields get: the same rules, except that a
  number in international form (``+…``) that is well formed but outside any assigned range (``+1 555 …``) is
  accepted, because the Telnyx-compatible API schedules any E.164 string. It raises :class:`InvalidPhone`.

:data:`E164` is the shape of an E.164 string; :func:`e164_or_none` reads a number a provider reported, and
:func:`parse_e164` gives the ``phonenumbers`` object of an E.164 string (for geography: zones, states).
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Iterable
from typing import Any, Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat, ValidationResult
from phonenumbers.phonemetadata import PhoneNumberDesc
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

sre_parser: Any = importlib.import_module("re._parser")
sre_constants: Any = importlib.import_module("re._constants")

__all__ = [
    "E164",
    "R_PHONE_BAD_COUNTRY",
    "R_PHONE_BAD_LENGTH",
    "R_PHONE_EXTENSION",
    "R_PHONE_INVALID",
    "R_PHONE_LOCAL_ONLY",
    "R_PHONE_MISSING",
    "R_PHONE_NOT_A_NUMBER",
    "R_PHONE_NO_REGION",
    "R_PHONE_TOO_LONG",
    "R_PHONE_TOO_SHORT",
    "InvalidPhone",
    "PhoneNormalizer",
    "contact_number",
    "e164_or_none",
    "is_sip_uri",
    "normalize_phone",
    "parse_e164",
    "phone_normalizer",
    "sip_user_looks_numeric",
    "sip_user_number",
    "sip_user_part",
    "to_e164",
]

E164: Final = re.compile(r"^\+[1-9]\d{1,14}$")
"""The shape of an E.164 number: ``+``, a country code that does not start with 0, at most 15 digits."""

# --- reasons (the texts operators read in import reports and API errors) -----------------------------------

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


class InvalidPhone(ValueError):
    """A value that is not a phone number; the message names the value and why."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(f"{value!r}: {reason}")
        self.value = value
        self.reason = reason


# --- the strict verdict, fast ------------------------------------------------------------------------------


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


def phone_normalizer(default_region: str | None) -> PhoneNormalizer:
    """The process's normalizer for ``default_region`` (its cache is what makes repeated numbers cheap)."""
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
    return phone_normalizer(default_region)(value)


# --- the lenient form, provider numbers, parsing -----------------------------------------------------------


def to_e164(value: str, *, default_region: str | None = "US") -> str:
    """``value`` in E.164, or ``InvalidPhone`` naming the value and the reason.

    National numbers use ``default_region``. Numbers in international form (``+…``) that are well formed but
    outside an assigned range are accepted (see the module docstring); impossible ones (too short, too long,
    unknown country code, extensions) are not, nor are national numbers that are invalid in ``default_region``.
    """
    stripped = value.strip()
    e164, reason = normalize_phone(stripped, default_region=default_region)
    if e164 is not None:
        return e164
    if reason == R_PHONE_INVALID and stripped.startswith("+"):
        try:
            number = phonenumbers.parse(stripped, default_region.upper() if default_region else None)
        except NumberParseException:
            raise InvalidPhone(value, reason) from None
        return str(phonenumbers.format_number(number, PhoneNumberFormat.E164))
    raise InvalidPhone(value, reason or R_PHONE_MISSING)


def e164_or_none(phone: str) -> str | None:
    """A number reported by the provider: E.164 as normalized, or as given when it already is E.164."""
    try:
        return to_e164(phone, default_region=None)
    except InvalidPhone:
        return phone if E164.match(phone) else None


def parse_e164(phone: str | None) -> phonenumbers.PhoneNumber | None:
    """The ``phonenumbers`` object of a number written in international form; ``None`` for anything else."""
    if not phone or not phone.startswith("+"):
        return None
    try:
        return phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None


# --- SIP URI targets ---------------------------------------------------------------------------------------

_SIP_USER: Final = re.compile(r"^sips?:([^@;?]+)@", re.IGNORECASE)
_VISUAL_SEPARATORS: Final = str.maketrans("", "", "-.() ")  # RFC 3966 §5.1.1 visual-separator (and spaces)


def is_sip_uri(target: str) -> bool:
    """Whether an event target is a SIP URI (``sip:`` / ``sips:``) rather than a number."""
    return target[:4].lower() == "sip:" or target[:5].lower() == "sips:"


def sip_user_part(target: str) -> str | None:
    """A SIP URI's user part, unescaped and without visual separators; ``None`` for anything else."""
    match = _SIP_USER.match(target.strip())
    if match is None:
        return None
    from urllib.parse import unquote

    return unquote(match.group(1)).translate(_VISUAL_SEPARATORS)


def sip_user_looks_numeric(target: str) -> bool:
    """Whether a SIP URI's user part is digits (with or without ``+``): meant as a number, even one that
    :func:`sip_user_number` cannot read (such a target is held, never dialed without its checks)."""
    user = sip_user_part(target)
    return user is not None and user.removeprefix("+").isdigit()


def sip_user_number(target: str) -> str | None:
    """The phone number a SIP URI's user part dials, in E.164; ``None`` when the user part is no number.

    ``sip:+12125550147@sip.telnyx.com`` and ``sip:12125550147@pstn.example`` both reach +12125550147: a gateway
    routes a numeric user part to the number (Telnyx requires SIP usernames to "begin with a non-numeric
    character" precisely so that digits are never a username, developers.telnyx.com/docs/voice/sip-trunking/
    features/sip-uri-calling). Visual separators (RFC 3966 §5.1.1) and percent-escapes are read through. Digits
    without ``+`` count only when ``+digits`` is a valid number (``1001``, an extension, is not).
    """
    user = sip_user_part(target)
    if user is None:
        return None
    if user.startswith("+"):
        return e164_or_none(user) if user[1:].isdigit() else None
    if not user.isdigit() or not 7 <= len(user) <= 15:
        return None
    e164, _ = normalize_phone("+" + user, default_region=None)
    return e164


def contact_number(target: str) -> str | None:
    """The E.164 number an event target reaches, for every check made on a number (do-not-contact, calling
    windows, frequency caps): the number itself, the number in a SIP URI's user part, or ``None`` (a SIP
    username such as ``sip:alice@pbx.example``, which no number-based check can apply to)."""
    if is_sip_uri(target):
        return sip_user_number(target)
    return e164_or_none(target)
