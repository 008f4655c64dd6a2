"""Which column of a call list is which: header normalization, the operator's ``mapping``, the ``variables``
allow-list, ``drop_columns`` and the ``date_order`` of dates written with slashes; and what makes two rows one
reminder (``dedupe_key``), what happens to a row whose time has passed (``late_policy``) and whether a file
already uploaded to a live campaign may be uploaded again (``allow_duplicate_upload``).

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
LATE_SEND_NOW: Final = "send_now"
LATE_SKIP: Final = "skip"
LATE_IF_BEFORE: Final = "send_now_if_before"
LATE_POLICIES: Final = (LATE_SEND_NOW, LATE_SKIP, LATE_IF_BEFORE)
"""``send_now`` (a campaign's default: a late row is due at once), ``skip``, ``send_now_if_before: EXPR``."""

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
    dedupe_key: tuple[str, ...] | None = None
    """Columns (after mapping) that identify one reminder; ``None``: the phone (one event per number)."""
    late_policy: str | None = None
    """``send_now``, ``skip`` or ``send_now_if_before: EXPR`` (see :func:`parse_late_policy`); ``None``: send_now."""
    allow_duplicate_upload: bool = False
    """Accept a file whose content, or whose set of reminders, a live campaign already has."""

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
        if self.dedupe_key is not None:
            body["dedupe_key"] = list(self.dedupe_key)
        if self.late_policy is not None:
            body["late_policy"] = self.late_policy
        if self.allow_duplicate_upload:
            body["allow_duplicate_upload"] = True
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
            dedupe_key=tuple(body["dedupe_key"]) if body.get("dedupe_key") else None,
            late_policy=body.get("late_policy"),
            allow_duplicate_upload=bool(body.get("allow_duplicate_upload")),
        )

    @property
    def late(self) -> tuple[str, str | None]:
        """(policy, expression): ``("send_now", None)`` when unset."""
        return parse_late_policy(self.late_policy or LATE_SEND_NOW)


LIST_SETTINGS_FIELDS: Final = (
    "mapping",
    "variables",
    "drop_columns",
    "date_order",
    "dedupe_key",
    "late_policy",
    "allow_duplicate_upload",
)


def parse_late_policy(value: object) -> tuple[str, str | None]:
    """``"skip"``, ``"send_now"``, ``"send_now_if_before: appointment_date appointment_time"`` (or the JSON
    ``{"send_now_if_before": "..."}``) → (policy, expression). Raises ValueError naming what is wrong.

    The expression is one column (a date-time, or a date: its start) or a date column and a time column, by
    their names after mapping, optionally followed by ``- DURATION`` (``appointment_at - 2h``): a late row is
    sent now while the clock is before that instant, and skipped after it."""
    if isinstance(value, dict) and len(value) == 1 and LATE_IF_BEFORE in value:
        value = f"{LATE_IF_BEFORE}: {value[LATE_IF_BEFORE]}" if isinstance(value[LATE_IF_BEFORE], str) else None
    if not isinstance(value, str):
        raise ValueError(
            f'must be "{LATE_SEND_NOW}", "{LATE_SKIP}" or "{LATE_IF_BEFORE}: <column> [<time column>] [- <duration>]"'
        )
    head, sep, expression = value.partition(":")
    policy = head.strip()
    if policy in (LATE_SEND_NOW, LATE_SKIP) and not sep:
        return policy, None
    if policy != LATE_IF_BEFORE:
        raise ValueError(
            f"{value!r} is not a late policy: expected {LATE_SEND_NOW}, {LATE_SKIP} or "
            f"'{LATE_IF_BEFORE}: <column> [<time column>] [- <duration>]'"
        )
    words = expression.split()
    if not words:
        raise ValueError(f"{value!r}: name the column after '{LATE_IF_BEFORE}:', e.g. 'appointment_at'")
    return LATE_IF_BEFORE, " ".join(words)


def split_late_expression(expression: str) -> tuple[list[str], str | None]:
    """``"appointment_date appointment_time - 2h"`` → (["appointment_date", "appointment_time"], "2h").
    Raises ValueError when it is not one or two columns and an optional ``- DURATION``."""
    words = expression.split()
    offset: str | None = None
    for i, word in enumerate(words):
        if word.startswith("-"):
            rest = [word[1:], *words[i + 1 :]] if len(word) > 1 else words[i + 1 :]
            if len(rest) != 1:
                raise ValueError(f"{expression!r}: a single duration must follow '-', e.g. 'appointment_at - 2h'")
            offset, words = rest[0], words[:i]
            break
    if not 1 <= len(words) <= 2:
        raise ValueError(
            f"{expression!r}: expected a date-time column, or a date column and a time column, e.g. "
            "'appointment_date appointment_time'"
        )
    return words, offset


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
    raw_key = body.get("dedupe_key")
    dedupe_key: tuple[str, ...] | None = None
    if raw_key is not None:
        keys = _names(raw_key, "column names", bad, "dedupe_key")
        if keys is not None and (not keys or len({normalize_header(k) for k in keys}) != len(keys)):
            bad("dedupe_key", 'must be a non-empty list of distinct column names, e.g. ["phone", "appointment_date"]')
        elif keys is not None:
            dedupe_key = keys
    late: str | None = None
    raw_late = body.get("late_policy")
    if raw_late is not None:
        try:
            policy, expression = parse_late_policy(raw_late)
            if expression is not None:
                split_late_expression(expression)
            late = policy if expression is None else f"{policy}: {expression}"
        except ValueError as exc:
            bad("late_policy", str(exc))
    allow = body.get("allow_duplicate_upload", False)
    if not isinstance(allow, bool):
        bad("allow_duplicate_upload", "must be true or false")
    return ListSettings(
        mapping=mapping,
        variables=allowed,
        drop_columns=dropped or (),
        date_order=order if order in DATE_ORDERS else None,
        dedupe_key=dedupe_key,
        late_policy=late,
        allow_duplicate_upload=allow is True,
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
