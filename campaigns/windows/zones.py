"""Where a recipient may be: candidate time zones and the US states whose rules apply.

Zones come from the most specific source available: the row's ``timezone``, its ``state`` (every zone of the
state), the number's exchange (``phonenumbers``), the campaign's default zone; none: the recipient is held.
A SIP URI target is located by the number in its user part (``sip:+13055550123@sip.telnyx.com`` is in Florida).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones

from campaigns.phones import is_sip_uri, parse_e164, sip_user_number
from campaigns.windows.us_states import STATE_ZONES, number_state


@dataclass(frozen=True)
class Recipient:
    """Where a recipient may be: candidate zones (all must allow) and the US states whose rules apply."""

    zones: tuple[str, ...]
    states: tuple[str, ...] = ()


def is_timezone(name: object) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows."""
    if not isinstance(name, str) or not name:
        return False
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return False
    return True


@functools.lru_cache(maxsize=65536)
def number_zones(phone: str) -> tuple[str, ...]:
    """Zones of a geographic number, resolved by ``phonenumbers`` down to the exchange (NPA-NXX).

    Toll-free and other non-geographic numbers return dozens of zones: they give none here (the recipient is
    held unless a zone is given another way).
    """
    number = parse_e164(phone)
    if number is None or not phonenumbers.is_number_geographical(number):
        return ()
    zones = {z for z in phone_timezones.time_zones_for_number(number) if z != "Etc/Unknown"}
    return tuple(sorted(zones)) if 0 < len(zones) <= 4 else ()


def _number_of(target: str | None) -> str | None:
    """The number whose geography locates a target: the target, or the number in a SIP URI's user part."""
    return sip_user_number(target) if target and is_sip_uri(target) else target


def resolve_zones(
    *, phone: str | None, timezone: str | None = None, state: str | None = None, default_zone: str | None = None
) -> tuple[list[str], str]:
    """Candidate zones and where they came from: row ``timezone`` → row ``state`` → number → campaign default."""
    phone = _number_of(phone)
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
    phone = _number_of(phone)
    if state and state.upper() in STATE_ZONES:
        found.add(state.upper())
    from_number = number_state(phone) if phone else None
    if from_number:
        found.add(from_number)
    return tuple(sorted(found))


def recipient_for(*, phone: str | None, zones: Sequence[str], state: str | None = None) -> Recipient:
    return Recipient(tuple(zones), applicable_states(phone, state))
