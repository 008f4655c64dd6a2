"""Explaining a decision: every rule, zone and cap that decides whether a number may be contacted at an instant
(``campaigns windows check``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from campaigns.phones import contact_number, is_sip_uri, sip_user_looks_numeric
from campaigns.windows.engine import Verdict, is_allowed, next_opening, verdicts
from campaigns.windows.rulesets import Cap, Rule, Ruleset
from campaigns.windows.zones import recipient_for, resolve_zones


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
    no_window: str | None = None
    """Why no calling window applies although the ruleset has one (a SIP username: no number to apply it to)."""

    @property
    def held(self) -> bool:
        return self.ruleset.needs_zone and not self.zones and self.no_window is None


def explain(
    instant: datetime,
    phone: str,
    ruleset: Ruleset,
    *,
    timezone: str | None = None,
    state: str | None = None,
    default_zone: str | None = None,
) -> Explanation:
    """Everything that decides whether ``phone`` may be contacted at ``instant``; a SIP URI is explained as the
    number in its user part, as the claim checks it."""
    if is_sip_uri(phone) and contact_number(phone) is None and not sip_user_looks_numeric(phone):
        result = Explanation(instant, ruleset, [], "a SIP username, no phone number", ())
        result.no_window = "the SIP target's user part is no phone number (a SIP username): no calling window applies"
        result.allowed = True
        return result
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
