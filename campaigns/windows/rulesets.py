"""Rulesets: the rules of when a recipient may be contacted, as data.

Versioned TOML files shipped in ``campaigns/rulesets/`` (``us``, ``ca``, ``au``), overridable from
``CAMPAIGNS_RULESETS_DIR`` without a release, plus ``none`` (no window, the Telnyx behaviour) and ``custom``
(weekly windows defined per campaign). A ruleset is a list of rules; each rule has weekly hours, optional holiday
closures (the ``holidays`` package), an optional fixed evaluation zone, an optional frequency cap and a citation.
A rule applies to every recipient or to recipients in one US state.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import holidays as holiday_data

from campaigns.windows.us_states import STATE_ZONES
from campaigns.windows.zones import is_timezone

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
            spans = ", ".join(f"{hhmm(a)}-{hhmm(b)}" for a, b in self.week[i]) or "closed"
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


# --- parsing rulesets ------------------------------------------------------------------------------------

_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def hhmm(seconds: int) -> str:
    """Seconds after local midnight as ``HH:MM``."""
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


def specificity(key: str) -> int:
    """How specific a day key is: a single day (3) beats a range (2) beats ``daily`` / ``all`` / ``mon-sun`` (1)."""
    key = key.strip().lower()
    if key in DAYS:
        return 3
    return 1 if key in ("daily", "all", "mon-sun") else 2


def parse_hours(hours: object, where: str) -> tuple[tuple[tuple[int, int], ...], ...]:
    """``{"mon-fri": "09:00-17:00", "sat": "closed"}`` → seven interval tuples; days not named are closed.

    Where keys overlap, the more specific one decides the day (:func:`specificity`): ``{"mon-fri": "09:00-20:00",
    "fri": "09:00-17:00"}`` closes Friday at 17:00. Two keys of the same specificity naming one day are an error
    naming both, so the answer never depends on key order (JSONB and ``sort_keys`` keep none, issue #19).
    """
    if not isinstance(hours, Mapping) or not hours:
        raise RulesetError(f'{where}: expected a table of days, e.g. {{ mon-fri = "09:00-17:00" }}')
    week: list[tuple[tuple[int, int], ...]] = [() for _ in range(7)]
    decided_by: list[str | None] = [None] * 7
    for key, value in hours.items():
        spans = _spans(value, f"{where}.{key}")
        rank = specificity(str(key))
        for day in _day_keys(str(key), f"{where}.{key}"):
            other = decided_by[day]
            if other is not None and specificity(other) == rank:
                first, second = sorted((other, str(key)))
                raise RulesetError(
                    f"{where}: {first!r} and {second!r} both set {DAYS[day]}; overlapping keys must differ in "
                    "specificity (a single day beats a range beats daily)"
                )
            if other is None or specificity(other) < rank:
                week[day], decided_by[day] = spans, str(key)
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
