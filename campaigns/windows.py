"""Calling windows: when a recipient may be contacted, in their own time zone(s).

Rules are data: versioned TOML rulesets shipped in ``campaigns/rulesets/`` (``us``, ``ca``, ``au``), overridable
from ``CAMPAIGNS_RULESETS_DIR`` without a release, plus ``none`` (no window, the Telnyx behaviour) and ``custom``
(weekly windows defined per campaign). A ruleset is a list of rules; each rule has weekly hours, optional holiday
closures (the ``holidays`` package), an optional fixed evaluation zone, an optional frequency cap and a citation.
A rule applies to every recipient or to recipients in one US state.

A moment is allowed only if it is allowed in **every** candidate zone of the recipient under **every** applicable
rule. DST-correct by construction: each instant is converted to local wall time with ``zoneinfo`` and compared as
wall time; the next opening is found by searching forward over local days; no offsets are cached. A window edge
that falls in a spring-forward gap opens at the first instant that exists after it.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holiday_data
import phonenumbers
from phonenumbers import timezone as phone_timezones

from campaigns.settings import built_once

HOLD_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
"""Where a held event waits: it is never dispatched until someone fixes its time zone."""

SEARCH_DAYS = 15
"""How far ahead ``next_opening`` looks before giving up (the recipient is then held)."""

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 24 * 3600


class RulesetError(ValueError):
    """A ruleset file or a custom window definition is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Cap:
    """At most ``attempts`` attempts to one number in any rolling ``window``."""

    attempts: int
    window: timedelta
    note: str = ""


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    citation: str
    verified: bool
    week: tuple[tuple[tuple[int, int], ...], ...]
    """Seven entries, Monday first: the open ``[start, end)`` intervals in seconds after local midnight."""
    holidays: tuple[str, str | None] | None = None
    zone: str | None = None
    cap: Cap | None = None
    state: str | None = None

    def applies_to(self, states: Iterable[str]) -> bool:
        return self.state is None or self.state in states

    def hours_text(self) -> str:
        """The weekly hours in the compact form the files use, e.g. ``mon-sat 08:00-20:00; sun closed``."""
        parts: list[str] = []
        i = 0
        while i < 7:
            j = i
            while j + 1 < 7 and self.week[j + 1] == self.week[i]:
                j += 1
            days = DAYS[i] if i == j else f"{DAYS[i]}-{DAYS[j]}"
            spans = ", ".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in self.week[i]) or "closed"
            parts.append(f"{days} {spans}")
            i = j + 1
        if self.holidays:
            country, subdiv = self.holidays
            parts.append(f"closed on {country}{'-' + subdiv if subdiv else ''} holidays")
        return "; ".join(parts)


@dataclass(frozen=True)
class Ruleset:
    name: str
    version: str
    description: str
    rules: tuple[Rule, ...] = ()
    source: str = "built-in"

    @property
    def needs_zone(self) -> bool:
        return bool(self.rules)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def rules_for(self, states: Iterable[str]) -> list[Rule]:
        wanted = set(states)
        return [r for r in self.rules if r.applies_to(wanted)]

    def caps_for(self, states: Iterable[str]) -> list[tuple[Rule, Cap]]:
        return [(r, r.cap) for r in self.rules_for(states) if r.cap is not None]


NONE = Ruleset("none", "1", "no calling window (the Telnyx behaviour)")
CUSTOM = "custom"


@dataclass(frozen=True)
class Recipient:
    """Where a recipient may be: candidate zones (all must allow) and the US states whose rules apply."""

    zones: tuple[str, ...]
    states: tuple[str, ...] = ()


# --- parsing rulesets ------------------------------------------------------------------------------------

_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def _day_keys(key: str, where: str) -> list[int]:
    key = key.strip().lower()
    if key in ("daily", "all", "mon-sun"):
        return list(range(7))
    if key in DAYS:
        return [DAYS.index(key)]
    first, sep, last = key.partition("-")
    if sep and first in DAYS and last in DAYS and DAYS.index(first) <= DAYS.index(last):
        return list(range(DAYS.index(first), DAYS.index(last) + 1))
    raise RulesetError(f"{where}: unknown day {key!r} (use daily, mon..sun or a range such as mon-fri)")


def _spans(value: object, where: str) -> tuple[tuple[int, int], ...]:
    if value == "closed":
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise RulesetError(f'{where}: expected "HH:MM-HH:MM", a list of them, or "closed"')
    spans: list[tuple[int, int]] = []
    for item in items:
        match = _SPAN.match(item) if isinstance(item, str) else None
        if match is None:
            raise RulesetError(f'{where}: {item!r} is not "HH:MM-HH:MM"')
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
        if m1 > 59 or m2 > 59 or start >= DAY_SECONDS or end > DAY_SECONDS or start >= end:
            raise RulesetError(f"{where}: {item!r} must be a non-empty span between 00:00 and 24:00")
        spans.append((start, end))
    return tuple(sorted(spans))


def parse_hours(hours: object, where: str) -> tuple[tuple[tuple[int, int], ...], ...]:
    """``{"mon-fri": "09:00-17:00", "sat": "closed"}`` → seven interval tuples; days not named are closed."""
    if not isinstance(hours, Mapping) or not hours:
        raise RulesetError(f'{where}: expected a table of days, e.g. {{ mon-fri = "09:00-17:00" }}')
    week: list[tuple[tuple[int, int], ...]] = [() for _ in range(7)]
    for key, value in hours.items():
        spans = _spans(value, f"{where}.{key}")
        for day in _day_keys(str(key), f"{where}.{key}"):
            week[day] = spans
    return tuple(week)


def _holidays(value: object, where: str) -> tuple[str, str | None] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("country"), str):
        raise RulesetError(f'{where}: expected {{ country = "US", subdiv = "LA" }}')
    country, subdiv = value["country"], value.get("subdiv")
    supported = holiday_data.list_supported_countries()
    if country not in supported:
        raise RulesetError(f"{where}.country: {country!r} is not a country the holidays package knows")
    if subdiv is not None and subdiv not in supported[country]:
        raise RulesetError(f"{where}.subdiv: {subdiv!r} is not a subdivision of {country} the holidays package knows")
    return country, subdiv


def _fixed_zone(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not is_timezone(value):
        raise RulesetError(f"{where}: {value!r} is not an IANA time zone")
    return str(value)


def _cap(value: object, where: str) -> Cap | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RulesetError(f"{where}: expected {{ attempts = 3, hours = 24 }}")
    attempts, hours = value.get("attempts"), value.get("hours")
    if not _positive_int(attempts):
        raise RulesetError(f"{where}.attempts: must be a positive integer")
    if not (_positive_int(hours) or (isinstance(hours, float) and hours > 0)):
        raise RulesetError(f"{where}.hours: must be a positive number")
    assert isinstance(attempts, int) and isinstance(hours, int | float)
    return Cap(attempts, timedelta(hours=hours), str(value.get("note", "")))


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _text(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise RulesetError(f"{where}.{key}: required text")
    return value


def parse_ruleset(data: Mapping[str, Any], source: str) -> Ruleset:
    """Build a ruleset from a parsed TOML document; every error names ``source`` and the key."""
    name = _text(data, "name", source)
    if name in ("none", CUSTOM):
        raise RulesetError(f"{source}.name: {name!r} is reserved")
    version = _text(data, "version", source)
    rules_data = data.get("rule")
    if not isinstance(rules_data, list) or not rules_data:
        raise RulesetError(f"{source}: a ruleset needs at least one [[rule]]")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(rules_data):
        where = f"{source}: rule[{index}]"
        if not isinstance(raw, Mapping):
            raise RulesetError(f"{where}: expected a table")
        rule_id = _text(raw, "id", where)
        where = f"{source}: rule {rule_id}"
        if rule_id in seen:
            raise RulesetError(f"{where}: duplicate id")
        seen.add(rule_id)
        unknown = set(raw) - {"id", "title", "citation", "verified", "hours", "holidays", "zone", "cap", "state"}
        if unknown:
            raise RulesetError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        state = raw.get("state")
        if state is not None and (not isinstance(state, str) or state.upper() not in STATE_ZONES):
            raise RulesetError(f"{where}.state: {state!r} is not a US state or territory code")
        verified = raw.get("verified", False)
        if not isinstance(verified, bool):
            raise RulesetError(f"{where}.verified: must be true or false")
        rules.append(
            Rule(
                id=rule_id,
                title=str(raw.get("title", rule_id)),
                citation=_text(raw, "citation", where),
                verified=verified,
                week=parse_hours(raw.get("hours"), f"{where}.hours"),
                holidays=_holidays(raw.get("holidays"), f"{where}.holidays"),
                zone=_fixed_zone(raw.get("zone"), f"{where}.zone"),
                cap=_cap(raw.get("cap"), f"{where}.cap"),
                state=state.upper() if isinstance(state, str) else None,
            )
        )
    return Ruleset(name, version, str(data.get("description", "")), tuple(rules), source)


def custom_ruleset(spec: object, where: str = "custom_windows") -> Ruleset:
    """The ``custom`` ruleset of one campaign: ``{"hours": {...}, "holidays"?: {...}}``, recipient local time."""
    if not isinstance(spec, Mapping):
        raise RulesetError(f'{where}: expected {{"hours": {{"mon-fri": "09:00-17:00"}}}}')
    unknown = set(spec) - {"hours", "holidays"}
    if unknown:
        raise RulesetError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    rule = Rule(
        id=CUSTOM,
        title="campaign weekly window",
        citation="defined by the campaign operator",
        verified=True,
        week=parse_hours(spec.get("hours"), f"{where}.hours"),
        holidays=_holidays(spec.get("holidays"), f"{where}.holidays"),
    )
    return Ruleset(CUSTOM, "campaign", "weekly windows defined by the campaign", (rule,), "campaign settings")


@functools.lru_cache(maxsize=1024)
def _cached_custom(spec: str) -> Ruleset:
    return custom_ruleset(json.loads(spec))


def _shipped_files() -> list[tuple[str, bytes]]:
    folder = resources.files("campaigns") / "rulesets"
    return sorted(
        (f"campaigns/rulesets/{f.name}", f.read_bytes()) for f in folder.iterdir() if f.name.endswith(".toml")
    )


@functools.lru_cache(maxsize=8)
def load_rulesets(directory: str | None = None) -> dict[str, Ruleset]:
    """Shipped rulesets, then the files of ``directory`` (same ``name`` replaces a shipped ruleset)."""
    files = _shipped_files()
    if directory:
        folder = Path(directory)
        if not folder.is_dir():
            raise RulesetError(f"CAMPAIGNS_RULESETS_DIR: {directory} is not a directory")
        files += sorted((str(p), p.read_bytes()) for p in folder.glob("*.toml"))
    found: dict[str, Ruleset] = {"none": NONE}
    for source, raw in files:
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise RulesetError(f"{source}: not valid TOML: {exc}") from exc
        ruleset = parse_ruleset(data, source)
        found[ruleset.name] = ruleset
    return found


def rulesets() -> dict[str, Ruleset]:
    """The rulesets in effect for this process (``CAMPAIGNS_RULESETS_DIR`` applied)."""
    from campaigns.settings import get_settings

    directory = get_settings().rulesets_dir
    return load_rulesets(str(directory) if directory else None)


def ruleset_names() -> frozenset[str]:
    """Names a campaign may choose (``custom`` needs ``custom_windows``)."""
    return frozenset(rulesets()) | {CUSTOM}


def get_ruleset(name: str, custom: object = None) -> Ruleset:
    if name == CUSTOM:
        return _cached_custom(json.dumps(custom, sort_keys=True))
    try:
        return rulesets()[name]
    except KeyError:
        raise RulesetError(f"unknown ruleset {name!r}") from None


# --- recipients ------------------------------------------------------------------------------------------

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


def is_timezone(name: object) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows."""
    if not isinstance(name, str) or not name:
        return False
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return False
    return True


def _parse(phone: str | None) -> phonenumbers.PhoneNumber | None:
    if not phone or not phone.startswith("+"):
        return None
    try:
        return phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None


@functools.lru_cache(maxsize=65536)
def number_zones(phone: str) -> tuple[str, ...]:
    """Zones of a geographic number, resolved by ``phonenumbers`` down to the exchange (NPA-NXX).

    Toll-free and other non-geographic numbers return dozens of zones: they give none here (the recipient is
    held unless a zone is given another way).
    """
    number = _parse(phone)
    if number is None or not phonenumbers.is_number_geographical(number):
        return ()
    zones = {z for z in phone_timezones.time_zones_for_number(number) if z != "Etc/Unknown"}
    return tuple(sorted(zones)) if 0 < len(zones) <= 4 else ()


@functools.lru_cache(maxsize=65536)
def number_state(phone: str) -> str | None:
    """The US state of a number's exchange, from the ``phonenumbers`` geocoder ("Pensacola, FL" or "Florida").

    The same answer as ``geocoder.description_for_number(number, "en")`` read as a state, from a table of the US
    prefixes only (see :func:`_exchange_states`).
    """
    number = _parse(phone)
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


def resolve_zones(
    *, phone: str | None, timezone: str | None = None, state: str | None = None, default_zone: str | None = None
) -> tuple[list[str], str]:
    """Candidate zones and where they came from: row ``timezone`` → row ``state`` → number → campaign default."""
    if timezone:
        return [timezone], "timezone column"
    if state and state.upper() in STATE_ZONES:
        return list(STATE_ZONES[state.upper()]), f"state column ({state.upper()})"
    zones = number_zones(phone) if phone else ()
    if zones:
        return list(zones), "phone number exchange (phonenumbers)"
    if default_zone:
        return [default_zone], "campaign default zone"
    return [], "unknown: held"


def candidate_zones(
    *, phone: str | None, timezone: str | None = None, state: str | None = None, default_zone: str | None = None
) -> list[str]:
    """Where the recipient may be, most specific source first (see :func:`resolve_zones`)."""
    return resolve_zones(phone=phone, timezone=timezone, state=state, default_zone=default_zone)[0]


def applicable_states(phone: str | None, state: str | None = None) -> tuple[str, ...]:
    """US states whose rules apply: the row's ``state`` and the state of the number's exchange (both, if they
    differ: a Florida number may be carried to New York, and Florida's law still presumes it is in Florida)."""
    found: set[str] = set()
    if state and state.upper() in STATE_ZONES:
        found.add(state.upper())
    from_number = number_state(phone) if phone else None
    if from_number:
        found.add(from_number)
    return tuple(sorted(found))


def recipient_for(*, phone: str | None, zones: Sequence[str], state: str | None = None) -> Recipient:
    return Recipient(tuple(zones), applicable_states(phone, state))


# --- the window engine -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _holiday_calendar(country: str, subdiv: str | None) -> holiday_data.HolidayBase:
    return holiday_data.country_holidays(country, subdiv=subdiv)


@functools.lru_cache(maxsize=1024)
def _tz(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True)
class Verdict:
    """Why one rule allows or blocks an instant in one zone (for ``campaigns windows check``)."""

    rule: Rule
    zone: str
    local: datetime
    allowed: bool
    why: str


def _evaluate(instant: datetime, zone: str, rule: Rule) -> Verdict:
    where = rule.zone or zone
    local = instant.astimezone(_tz(where))
    if rule.holidays is not None:
        name = _holiday_calendar(*rule.holidays).get(local.date())
        if name is not None:
            return Verdict(rule, where, local, False, f"closed on {name}")
    spans = rule.week[local.weekday()]
    if not spans:
        return Verdict(rule, where, local, False, f"closed on {DAYS[local.weekday()]}")
    seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    if any(start <= seconds < end for start, end in spans):
        return Verdict(rule, where, local, True, "inside the window")
    hours = ", ".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in spans)
    return Verdict(rule, where, local, False, f"outside {hours}")


def verdicts(instant: datetime, recipient: Recipient, ruleset: Ruleset) -> list[Verdict]:
    """Every (rule, zone) evaluation that decides ``instant``; a rule with a fixed zone is evaluated once."""
    out: list[Verdict] = []
    for rule in ruleset.rules_for(recipient.states):
        for zone in [rule.zone] if rule.zone else recipient.zones:
            out.append(_evaluate(instant, zone, rule))
    return out


def is_allowed(instant: datetime, recipient: Recipient, ruleset: Ruleset) -> bool:
    """Allowed only if every applicable rule allows it in every candidate zone; no zone → never allowed."""
    if not ruleset.needs_zone:
        return True
    if not recipient.zones:
        return False
    return all(v.allowed for v in verdicts(instant, recipient, ruleset))


def _bisect(lo: datetime, hi: datetime, reached: Callable[[datetime], bool]) -> datetime:
    """The first whole second in ``(lo, hi]`` where ``reached`` becomes true (``reached(hi)`` must be true)."""
    low, high = int(lo.timestamp()), int(hi.timestamp()) + 1
    while high - low > 1:
        mid = (low + high) // 2
        if reached(datetime.fromtimestamp(mid, UTC)):
            high = mid
        else:
            low = mid
    return datetime.fromtimestamp(high, UTC)


def _wall_to_instant(day: date, seconds: int, tz: ZoneInfo) -> datetime:
    """The first instant whose local wall time is at or after ``day`` + ``seconds`` (a gap is skipped)."""
    naive = datetime.combine(day, time()) + timedelta(seconds=seconds)
    earliest = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if earliest.astimezone(tz).replace(tzinfo=None) == naive:
        return earliest
    # ``naive`` does not exist: it is in a spring-forward gap, which ends at the transition.
    lo, hi = sorted((naive.replace(tzinfo=tz, fold=1).astimezone(UTC), earliest))
    return _bisect(lo, hi, lambda t: t.astimezone(tz).replace(tzinfo=None) >= naive)


def _offset_differs(instant: datetime, *, tz: ZoneInfo, offset: timedelta | None) -> bool:
    return instant.astimezone(tz).utcoffset() != offset


def _transitions(tz: ZoneInfo, start: datetime, days: int) -> list[datetime]:
    """Instants in ``[start, start + days]`` where the zone's UTC offset changes (wall time jumps)."""
    found: list[datetime] = []
    step = timedelta(hours=12)
    t = start
    end = start + timedelta(days=days)
    while t < end:
        nxt = t + step
        before = t.astimezone(tz).utcoffset()
        if before != nxt.astimezone(tz).utcoffset():
            found.append(_bisect(t, nxt, functools.partial(_offset_differs, tz=tz, offset=before)))
        t = nxt
    return found


def next_opening(
    instant: datetime, recipient: Recipient, ruleset: Ruleset, *, horizon_days: int = SEARCH_DAYS
) -> datetime | None:
    """The first allowed instant at or after ``instant``; ``None`` when none exists within the horizon.

    The allowed set is an intersection of unions of local-time intervals, so its earliest point after
    ``instant`` is ``instant`` itself, the start of some rule's interval in some zone, or a DST transition
    (where wall time jumps). Only those candidates are checked, in order.
    """
    if is_allowed(instant, recipient, ruleset):
        return instant
    if not recipient.zones or not ruleset.needs_zone:
        return None
    candidates: set[datetime] = set()
    for rule in ruleset.rules_for(recipient.states):
        for zone_name in {rule.zone} if rule.zone else set(recipient.zones):
            tz = _tz(zone_name)
            first_day = instant.astimezone(tz).date()
            for offset in range(horizon_days + 1):
                day = first_day + timedelta(days=offset)
                for start, _ in rule.week[day.weekday()]:
                    opening = _wall_to_instant(day, start, tz)
                    if opening >= instant:
                        candidates.add(opening)
            candidates.update(t for t in _transitions(tz, instant, horizon_days + 1) if t >= instant)
    for candidate in sorted(candidates):
        if is_allowed(candidate, recipient, ruleset):
            return candidate
    return None


@functools.lru_cache(maxsize=4096)
def cached_next_opening(instant: datetime, recipient: Recipient, ruleset: Ruleset) -> datetime | None:
    """:func:`next_opening`, memoized: a claim batch defers many recipients who share zones at one instant."""
    return next_opening(instant, recipient, ruleset)


# --- explain ---------------------------------------------------------------------------------------------


@dataclass
class Explanation:
    instant: datetime
    ruleset: Ruleset
    zones: list[str]
    zone_source: str
    states: tuple[str, ...]
    verdicts: list[Verdict] = field(default_factory=list)
    caps: list[tuple[Rule, Cap]] = field(default_factory=list)
    allowed: bool = False
    next_opening: datetime | None = None

    @property
    def held(self) -> bool:
        return self.ruleset.needs_zone and not self.zones


def explain(
    instant: datetime,
    phone: str,
    ruleset: Ruleset,
    *,
    timezone: str | None = None,
    state: str | None = None,
    default_zone: str | None = None,
) -> Explanation:
    """Everything that decides whether ``phone`` may be contacted at ``instant``."""
    zones, source = resolve_zones(phone=phone, timezone=timezone, state=state, default_zone=default_zone)
    recipient = recipient_for(phone=phone, zones=zones, state=state)
    result = Explanation(instant, ruleset, zones, source, recipient.states)
    result.caps = ruleset.caps_for(recipient.states)
    if ruleset.needs_zone and not zones:
        return result
    result.verdicts = verdicts(instant, recipient, ruleset) if zones else []
    result.allowed = is_allowed(instant, recipient, ruleset)
    result.next_opening = next_opening(instant, recipient, ruleset)
    return result
