"""Calling windows: when a recipient may be contacted, in their own time zone(s).

Rules are data (:mod:`.rulesets`: versioned TOML rulesets shipped in ``campaigns/rulesets/``, overridable from
``CAMPAIGNS_RULESETS_DIR``, plus ``none`` and per-campaign ``custom`` windows). Where a recipient may be comes
from :mod:`.zones` (candidate zones: row, state, number exchange, campaign default) and :mod:`.us_states` (the
zones of each state and the state of a number's exchange). :mod:`.engine` decides an instant and finds the next
opening, DST-correct by construction; :mod:`.explain` shows everything behind one decision.

Callers use the names re-exported here (``from campaigns import windows``; ``windows.next_opening(…)``).
Pure computation: no database, no network.
"""

from campaigns.windows.engine import (
    HOLD_UNTIL,
    SEARCH_DAYS,
    Verdict,
    cached_next_opening,
    is_allowed,
    next_opening,
    verdicts,
)
from campaigns.windows.explain import Explanation, explain
from campaigns.windows.rulesets import (
    CUSTOM,
    DAYS,
    NONE,
    Cap,
    Rule,
    Ruleset,
    RulesetError,
    custom_ruleset,
    get_ruleset,
    load_rulesets,
    parse_hours,
    parse_ruleset,
    ruleset_names,
    rulesets,
)
from campaigns.windows.us_states import (
    STATE_NAMES,
    STATE_ZONES,
    compact_prefix_states,
    number_state,
    state_of_place,
    warm_up,
)
from campaigns.windows.zones import (
    Recipient,
    applicable_states,
    candidate_zones,
    is_timezone,
    number_zones,
    recipient_for,
    resolve_zones,
)

__all__ = [
    "CUSTOM",
    "DAYS",
    "HOLD_UNTIL",
    "NONE",
    "SEARCH_DAYS",
    "STATE_NAMES",
    "STATE_ZONES",
    "Cap",
    "Explanation",
    "Recipient",
    "Rule",
    "Ruleset",
    "RulesetError",
    "Verdict",
    "applicable_states",
    "cached_next_opening",
    "candidate_zones",
    "compact_prefix_states",
    "custom_ruleset",
    "explain",
    "get_ruleset",
    "is_allowed",
    "is_timezone",
    "load_rulesets",
    "next_opening",
    "number_state",
    "number_zones",
    "parse_hours",
    "parse_ruleset",
    "recipient_for",
    "resolve_zones",
    "ruleset_names",
    "rulesets",
    "state_of_place",
    "verdicts",
    "warm_up",
]
