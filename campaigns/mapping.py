"""Which column of a call list is which: header normalization, the operator's ``mapping``, the ``variables``
allow-list, ``drop_columns`` and the ``date_order`` of dates written with slashes.

The same settings come from the campaign JSON (``POST /v1/campaigns``), the CLI (``--map 'Phone Number=phone'``)
and recurring definitions (a ``mapping`` table); this module checks their shape, the importing package applies
them to a file's header. Pure: no database, no file.

A target is one of ``phone``, ``scheduled_at``, ``scheduled_at.date`` + ``scheduled_at.time`` (a date column and
a time column read together in the row's zone), ``timezone``, ``state``, ``text``, ``metadata.<key>``, a variable
name (letters, digits and ``_``, not starting with a digit or ``telnyx_``), or ``-`` (JSON: ``null``): dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

PHONE: Final = "phone"
SCHEDULED_AT: Final = "scheduled_at"
SCHEDULED_DATE: Final = "scheduled_at.date"
SCHEDULED_TIME: Final = "scheduled_at.time"
TIMEZONE: Final = "timezone"
STATE: Final = "state"
TEXT: Final = "text"
FIELD_TARGETS: Final = (PHONE, SCHEDULED_AT, SCHEDULED_DATE, SCHEDULED_TIME, TIMEZONE, STATE, TEXT)
"""Targets that set a field of the event (each at most one column)."""
METADATA_PREFIX: Final = "metadata."
RESERVED_PREFIX: Final = "telnyx_"
DROP: Final = "-"
"""The CLI's and TOML's spelling of a dropped column (JSON may also say ``null``)."""
DATE_ORDERS: Final = ("mdy", "dmy")

PHONE_ALIASES: Final = ("phone", "phone_number", "to", "number", "telnyx_end_user_target")
"""Normalized headers that name the phone column without a mapping."""

VARIABLE_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEPARATORS: Final = re.compile(r"[\s\-.]+")
MAX_MAPPING: Final = 500


def clean_header(name: str) -> str:
    """A header as written, without the spaces and byte-order mark around it."""
    return name.strip().strip("\ufeff").strip()


def normalize_header(name: str) -> str:
    """``" Phone Number "`` → ``phone_number``: trimmed, case-folded, runs of spaces, dashes and dots → ``_``.

    A ``metadata.<key>`` header keeps its prefix (``Metadata.Customer ID`` → ``metadata.customer_id``)."""
    folded = clean_header(name).casefold()
    if folded.startswith(METADATA_PREFIX):
        return METADATA_PREFIX + normalize_header(folded[len(METADATA_PREFIX) :])
    return _SEPARATORS.sub("_", folded).strip("_")


def target_error(target: str) -> str | None:
    """Why ``target`` is not a mapping target, or ``None`` when it is one."""
    if target in FIELD_TARGETS or target == DROP:
        return None
    if target.startswith(METADATA_PREFIX):
        return None if target[len(METADATA_PREFIX) :].strip() else f"{target!r} has no key after 'metadata.'"
    if target.startswith(RESERVED_PREFIX):
        return f"{target!r} is reserved: variable names starting with {RESERVED_PREFIX!r} belong to Telnyx"
    if not VARIABLE_NAME.match(target):
        return (
            f"{target!r} is not a target: expected {', '.join(FIELD_TARGETS)}, metadata.<key>, a variable name "
            f"(letters, digits and _) or {DROP!r} to drop the column"
        )
    return None


@dataclass(frozen=True)
class ListSettings:
    """How a campaign reads its call list (see the module docstring); the defaults read any file as before."""

    mapping: dict[str, str | None] = field(default_factory=dict)
    """Header (as written or normalized) → target; ``None`` drops the column."""
    variables: tuple[str, ...] | None = None
    """Allow-list: only these variables are sent to the provider (``None``: every variable)."""
    drop_columns: tuple[str, ...] = ()
    """Headers never read (neither sent nor usable in the text)."""
    date_order: str | None = None
    """``mdy`` or ``dmy`` for dates such as ``05/12/2026``; ``None``: such a date is refused when ambiguous."""

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.mapping:
            body["mapping"] = dict(self.mapping)
        if self.variables is not None:
            body["variables"] = list(self.variables)
        if self.drop_columns:
            body["drop_columns"] = list(self.drop_columns)
        if self.date_order is not None:
            body["date_order"] = self.date_order
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any] | None) -> ListSettings:
        """The stored form (``as_json``) back; ``None`` or ``{}`` give the defaults."""
        if not body:
            return cls()
        variables = body.get("variables")
        return cls(
            mapping=dict(body.get("mapping") or {}),
            variables=tuple(variables) if variables is not None else None,
            drop_columns=tuple(body.get("drop_columns") or ()),
            date_order=body.get("date_order"),
        )


LIST_SETTINGS_FIELDS: Final = ("mapping", "variables", "drop_columns", "date_order")


def _names(value: object, what: str, bad: Callable[[str, str], None], name: str) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        bad(name, f"must be a list of {what}")
        return None
    if len(value) > MAX_MAPPING:
        bad(name, f"must have at most {MAX_MAPPING} entries")
        return None
    return tuple(v.strip() for v in value)


def check_list_settings(body: Mapping[str, Any], bad: Callable[[str, str], None]) -> ListSettings:
    """The call-list settings of a campaign body; each problem goes to ``bad(field, detail)``."""
    mapping: dict[str, str | None] = {}
    raw = body.get("mapping")
    if raw is not None:
        if not isinstance(raw, dict):
            bad("mapping", 'must be an object: {"<column header>": "<target>"}, e.g. {"Phone Number": "phone"}')
        elif len(raw) > MAX_MAPPING:
            bad("mapping", f"must have at most {MAX_MAPPING} columns")
        else:
            seen: dict[str, str] = {}
            for header, target in raw.items():
                if not clean_header(header):
                    bad("mapping", "a column header is empty")
                    continue
                key = normalize_header(header)
                if key in seen:
                    bad(f"mapping/{header}", f"names the same column as {seen[key]!r}")
                    continue
                seen[key] = header
                if target is None or target == DROP:
                    mapping[clean_header(header)] = None
                elif not isinstance(target, str):
                    bad(f"mapping/{header}", f"must be a target name or null (to drop the column), not {target!r}")
                elif (why := target_error(target.strip())) is not None:
                    bad(f"mapping/{header}", why)
                else:
                    mapping[clean_header(header)] = target.strip()
            field_targets = [t for t in mapping.values() if t is not None and t in FIELD_TARGETS]
            for target in sorted({t for t in field_targets if field_targets.count(t) > 1}):
                bad("mapping", f"more than one column is mapped to {target!r}")
            has_date, has_time = SCHEDULED_DATE in field_targets, SCHEDULED_TIME in field_targets
            if has_date != has_time:
                bad("mapping", f"{SCHEDULED_DATE!r} and {SCHEDULED_TIME!r} go together: map both, or neither")
            elif has_date and SCHEDULED_AT in field_targets:
                bad("mapping", f"map either {SCHEDULED_AT!r} or a date and a time column, not both")
    variables = body.get("variables")
    allowed = _names(variables, "variable names", bad, "variables") if variables is not None else None
    for name in allowed or ():
        if not VARIABLE_NAME.match(name) or name.startswith(RESERVED_PREFIX):
            bad("variables", f"{name!r} is not a variable name (letters, digits and _, not starting with telnyx_)")
    drops = body.get("drop_columns")
    dropped = _names(drops, "column headers", bad, "drop_columns") if drops is not None else None
    order = body.get("date_order")
    if order is not None and order not in DATE_ORDERS:
        bad("date_order", f"must be one of {', '.join(DATE_ORDERS)} (month/day/year or day/month/year)")
    return ListSettings(
        mapping=mapping,
        variables=allowed,
        drop_columns=dropped or (),
        date_order=order if order in DATE_ORDERS else None,
    )


def parse_map_options(options: Iterable[str]) -> dict[str, str | None]:
    """CLI ``--map 'Phone Number=phone'`` options → a mapping (``Email=-`` drops). Raises ValueError naming the
    option that is not ``HEADER=TARGET``."""
    mapping: dict[str, str | None] = {}
    for option in options:
        header, sep, target = option.rpartition("=")
        if not sep or not header.strip() or not target.strip():
            raise ValueError(f"--map {option!r}: expected 'COLUMN HEADER=TARGET', e.g. 'Phone Number=phone'")
        mapping[header.strip()] = None if target.strip() == DROP else target.strip()
    return mapping
