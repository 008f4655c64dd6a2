"""US states: the zones each one uses, their names, and the state of a number's exchange.

A recipient's state decides which state rules apply (Florida's hours, Texas' Sunday noon, …). It comes from the
row's ``state`` column or from the number: ``phonenumbers``' geocoder knows the place of every US exchange, and
:func:`number_state` reads it from a compact table built once per process (see :func:`_exchange_states`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping

import phonenumbers

from campaigns.phones import parse_e164
from campaigns.settings import built_once

# Every IANA zone used in each US state or territory (a recipient known only by state gets all of them). Arizona
# includes Mountain time with daylight saving (the Navajo Nation), Nevada the Mountain time of West Wendover, and
# Alaska Hawaii time without daylight saving (``phonenumbers`` gives it to Unalaska, +1 907 581). A test checks
# that every zone ``phonenumbers`` gives a US exchange keeps the clock of one listed for its state.
STATE_ZONES: dict[str, tuple[str, ...]] = {
    "AL": ("America/Chicago",), "AK": ("America/Anchorage", "America/Adak", "Pacific/Honolulu"),
    "AZ": ("America/Phoenix", "America/Denver"),
    "AR": ("America/Chicago",), "CA": ("America/Los_Angeles",), "CO": ("America/Denver",),
    "CT": ("America/New_York",), "DE": ("America/New_York",), "DC": ("America/New_York",),
    "FL": ("America/New_York", "America/Chicago"), "GA": ("America/New_York",), "HI": ("Pacific/Honolulu",),
    "ID": ("America/Boise", "America/Los_Angeles"), "IL": ("America/Chicago",),
    "IN": ("America/Indiana/Indianapolis", "America/Chicago"), "IA": ("America/Chicago",),
    "KS": ("America/Chicago", "America/Denver"), "KY": ("America/New_York", "America/Chicago"),
    "LA": ("America/Chicago",), "ME": ("America/New_York",), "MD": ("America/New_York",),
    "MA": ("America/New_York",), "MI": ("America/Detroit", "America/Menominee"), "MN": ("America/Chicago",),
    "MS": ("America/Chicago",), "MO": ("America/Chicago",), "MT": ("America/Denver",),
    "NE": ("America/Chicago", "America/Denver"), "NV": ("America/Los_Angeles", "America/Denver"),
    "NH": ("America/New_York",),
    "NJ": ("America/New_York",), "NM": ("America/Denver",), "NY": ("America/New_York",),
    "NC": ("America/New_York",), "ND": ("America/Chicago", "America/Denver"), "OH": ("America/New_York",),
    "OK": ("America/Chicago",), "OR": ("America/Los_Angeles", "America/Boise"), "PA": ("America/New_York",),
    "RI": ("America/New_York",), "SC": ("America/New_York",), "SD": ("America/Chicago", "America/Denver"),
    "TN": ("America/Chicago", "America/New_York"), "TX": ("America/Chicago", "America/Denver"),
    "UT": ("America/Denver",), "VT": ("America/New_York",), "VA": ("America/New_York",),
    "WA": ("America/Los_Angeles",), "WV": ("America/New_York",), "WI": ("America/Chicago",),
    "WY": ("America/Denver",), "PR": ("America/Puerto_Rico",), "VI": ("America/St_Thomas",),
    "GU": ("Pacific/Guam",), "AS": ("Pacific/Pago_Pago",), "MP": ("Pacific/Saipan",),
}  # fmt: skip

STATE_NAMES: dict[str, str] = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA", "Colorado": "CO",
    "Connecticut": "CT", "Delaware": "DE", "Washington D.C.": "DC", "District of Columbia": "DC",
    "Florida": "FL", "Georgia": "GA", "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN",
    "Iowa": "IA", "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO",
    "Montana": "MT", "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ",
    "New Mexico": "NM", "New York": "NY", "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH",
    "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC",
    "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA",
    "Washington": "WA", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
}  # fmt: skip


@functools.lru_cache(maxsize=65536)
def number_state(phone: str) -> str | None:
    """The US state of a number's exchange, from the ``phonenumbers`` geocoder ("Pensacola, FL" or "Florida").

    The same answer as ``geocoder.description_for_number(number, "en")`` read as a state, from a table of the US
    prefixes only (see :func:`_exchange_states`).
    """
    number = parse_e164(phone)
    if number is None or phonenumbers.region_code_for_number(number) != "US":
        return None
    kind = phonenumbers.number_type(number)
    if kind == phonenumbers.PhoneNumberType.UNKNOWN or not phonenumbers.is_number_type_geographical(kind, 1):
        return None  # the geocoder names the country, not a place
    digits = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    table = _exchange_states()
    for length in range(len(digits), 0, -1):
        if digits[:length] in table:
            return table[digits[:length]]
    return None  # no place known: the geocoder falls back to the country


def state_of_place(place: str) -> str | None:
    """A US state from a geocoder description: "Florida" → FL, "Pensacola, FL" → FL, "United States" → None."""
    if place in STATE_NAMES:
        return STATE_NAMES[place]
    tail = place.rpartition(", ")[2]
    return tail if tail in STATE_ZONES else None


@built_once
def _exchange_states() -> dict[str, str | None]:
    """US geocoding prefixes ("1850", "1850432", …) → state, built once per process from ``phonenumbers``' data.

    The geocoder's data covers every country in dozens of languages: importing it costs ~100 MiB of resident
    memory per process and ~0.4 s, of which the US states need a few thousand entries. So the US English entries
    are read once, reduced to the prefixes whose state differs from that of their longest shorter prefix (the
    longest-prefix lookup then gives the same state), and the data module is unloaded again unless something
    else had imported it. Built from the installed ``phonenumbers``, so it follows its updates.
    """
    return compact_prefix_states({p: state_of_place(d) for p, d in _us_descriptions().items()})


def warm_up() -> None:
    """Build the exchange table now (~0.4 s) rather than in the first claim or dispatch that needs it."""
    _exchange_states()


def _us_descriptions() -> dict[str, str]:
    """Every ``+1`` prefix of the geocoder with its English description."""
    imported_here = "phonenumbers.geodata" not in sys.modules
    from phonenumbers import geodata

    try:
        return {p: names["en"] for p, names in geodata.GEOCODE_DATA.items() if p.startswith("1") and "en" in names}
    finally:
        if imported_here:
            package = "phonenumbers.geodata"
            for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
                del sys.modules[name]
            vars(phonenumbers).pop("geodata", None)


def compact_prefix_states(states: Mapping[str, str | None]) -> dict[str, str | None]:
    """Drop every prefix whose state is what its longest shorter prefix (or no prefix at all: ``None``) gives."""
    kept: dict[str, str | None] = {}
    for prefix in sorted(states, key=lambda p: (len(p), p)):
        parent = next((kept[prefix[:n]] for n in range(len(prefix) - 1, 0, -1) if prefix[:n] in kept), None)
        if states[prefix] != parent:
            kept[prefix] = states[prefix]
    return kept
