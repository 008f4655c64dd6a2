"""Phone numbers: the strict verdict of call lists (its fast path is exactly ``phonenumbers``), the lenient
form of the do-not-contact list and the API, provider-reported numbers.

No database: none of the conftest server fixtures are used.
"""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns import phones

# --- phone normalization: the fast path is exactly phonenumbers --------------------------------------------


def test_fast_path_is_enabled_with_the_installed_metadata() -> None:
    assert phones.PhoneNormalizer("US").fast_path_enabled


SHAPES = (
    "+1{a}{b}{c}",
    "+1 {a} {b} {c}",
    "+1-{a}-{b}-{c}",
    "+1 ({a}) {b}-{c}",
    "{a}{b}{c}",
    "({a}) {b}-{c}",
    "({a}){b}{c}",
    "{a}-{b}-{c}",
    "{a}.{b}.{c}",
    "1{a}{b}{c}",
    "1 ({a}) {b}-{c}",
    "1-{a}-{b}-{c}",
)


def decision_prefixes() -> list[str]:
    """Every cache key the fast path can ever use (its decision prefixes), by walking the digit trie."""
    index = phones._nanp_index()
    assert index is not None
    found: list[str] = []

    def decided(prefix: str) -> bool:
        return all(
            phones._decision_depth(index, prefix + d + "0" * (9 - len(prefix)), 4) <= len(prefix) for d in "0123456789"
        )

    def walk(prefix: str) -> None:
        if len(prefix) >= 4 and decided(prefix):
            found.append(prefix)
            return
        for d in "0123456789":
            walk(prefix + d)

    for a in "23456789":
        for b in "0123456789":
            for c in "0123456789":
                walk(a + b + c)
    return found


@pytest.mark.parametrize("region", ["US", None])
def test_fast_path_agrees_with_phonenumbers_on_every_decision_prefix(region: str | None) -> None:
    """For each cache key: the first number fills the cache, the second is answered from it; both must agree
    with phonenumbers itself (validity really is decided by the prefix)."""
    rnd = random.Random(20251121)
    normalizer = phones.PhoneNormalizer(region)
    prefixes = decision_prefixes()
    assert 8_000 < len(prefixes) < 50_000
    for prefix in prefixes:
        for _ in range(2):
            nsn = prefix + "".join(rnd.choice("0123456789") for _ in range(10 - len(prefix)))
            value = rnd.choice(SHAPES).format(a=nsn[:3], b=nsn[3:6], c=nsn[6:])
            expected, reason, _key = phones._slow_normalize(value, region)
            assert normalizer(value) == (expected, reason), value


@settings(max_examples=400, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=10, max_size=10),
    shape=st.sampled_from(SHAPES),
    region=st.sampled_from(["US", "CA", "GB", None]),
)
def test_fast_path_agrees_with_phonenumbers(digits: str, shape: str, region: str | None) -> None:
    value = shape.format(a=digits[:3], b=digits[3:6], c=digits[6:])
    normalizer = phones.PhoneNormalizer(region)
    expected, reason, _key = phones._slow_normalize(value, region)
    assert normalizer(value) == (expected, reason)  # cold
    assert normalizer(value) == (expected, reason)  # from the cache


def test_normalize_phone() -> None:
    assert phones.normalize_phone(" (212) 555-0199 ") == ("+12125550199", "")
    assert phones.normalize_phone("") == (None, phones.R_PHONE_MISSING)
    assert phones.normalize_phone("+1 555 0100") == (None, phones.R_PHONE_LOCAL_ONLY)
    assert phones.normalize_phone("+44 20 7946 0958", default_region=None) == ("+442079460958", "")
    full_width = "+1 212 555 0199".translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    assert phones.normalize_phone(full_width) == ("+12125550199", "")  # not ASCII: the slow path


# --- the lenient form, provider numbers, parsing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        (" +1 212 555 0147 ", "US", "+12125550147"),
        ("(212) 555-0147", "US", "+12125550147"),
        ("020 7946 0018", "GB", "+442079460018"),
        # Well formed but unassigned: accepted in international form only.
        ("+15555550100", "US", "+15555550100"),
        ("+1 555 555 0100", None, "+15555550100"),
    ],
)
def test_to_e164(value: str, region: str | None, expected: str) -> None:
    assert phones.to_e164(value, default_region=region) == expected


@pytest.mark.parametrize(
    ("value", "region", "reason"),
    [
        ("555-555-0100", "US", phones.R_PHONE_INVALID),  # national numbers must be valid in the region
        ("+1 212 555", "US", phones.R_PHONE_TOO_SHORT),
        ("2125550147", None, phones.R_PHONE_NO_REGION),
        ("+1 212 555 0147 ext. 3", "US", phones.R_PHONE_EXTENSION),
        ("  ", "US", phones.R_PHONE_MISSING),
    ],
)
def test_to_e164_names_the_value_and_the_reason(value: str, region: str | None, reason: str) -> None:
    with pytest.raises(phones.InvalidPhone) as caught:
        phones.to_e164(value, default_region=region)
    assert (caught.value.value, caught.value.reason) == (value, reason)
    assert str(caught.value) == f"{value!r}: {reason}"


def test_provider_numbers_are_normalized_or_kept_when_already_e164() -> None:
    assert phones.e164_or_none("+44 20 7946 0018") == "+442079460018"
    assert phones.e164_or_none("+15555550100") == "+15555550100"
    assert phones.e164_or_none("+999123456") == "+999123456"  # no such country, but the shape of E.164
    assert phones.e164_or_none("2125550147") is None  # national: whose?
    assert phones.e164_or_none("sip:alice@example.com") is None


def test_the_e164_shape() -> None:
    assert phones.E164.match("+12125550147") and phones.E164.match("+999123456789012")
    for value in ("12125550147", "+0123456", "+1", "+1234567890123456", "+1 212 555 0147"):
        assert not phones.E164.match(value), value


def test_parse_e164_reads_only_international_numbers() -> None:
    number = phones.parse_e164("+12125550147")
    assert number is not None and (number.country_code, number.national_number) == (1, 2125550147)
    assert phones.parse_e164("2125550147") is None
    assert phones.parse_e164("+") is None and phones.parse_e164(None) is None
    assert isinstance(phones.parse_e164("+442079460018"), phonenumbers.PhoneNumber)


@pytest.mark.parametrize(
    ("target", "number"),
    [
        ("sip:+12125550147@sip.telnyx.com", "+12125550147"),
        ("sip:12125550147@pstn.example", "+12125550147"),
        ("SIPS:+1-212-555-0147@pstn.example;user=phone", "+12125550147"),
        ("sip:%2B12125550147@pstn.example", "+12125550147"),
        ("sip:alice@pbx.example", None),
        ("sip:1001@pbx.example", None),  # an extension
        ("+12125550147", "+12125550147"),
        ("+4402079460000", "+442079460000"),
    ],
)
def test_contact_number_reads_the_user_part_of_a_sip_uri(target: str, number: str | None) -> None:
    assert phones.contact_number(target) == number
