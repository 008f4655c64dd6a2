"""The importer hook of a recurring run, for one file: each row's due time, rows already past, and the cross-run
dedupe keys claimed in ``recurring_reminders`` (a reminder any earlier run scheduled is a duplicate)."""

from __future__ import annotations

import uuid
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.orm import Session

from campaigns.clock import iso
from campaigns.importing import PHONE_ALIASES, CsvFileError, CsvLayout
from campaigns.importing.call_list import key_text
from campaigns.mapping import (
    DROP,
    METADATA_PREFIX,
    PHONE,
    SCHEDULED_AT,
    SCHEDULED_DATE,
    SCHEDULED_TIME,
    STATE,
    TEXT,
    TIMEZONE,
    normalize_header,
)
from campaigns.models import RecurringDefinition
from campaigns.recurring.due import DueCellError, due_time, parse_due


@dataclass(frozen=True)
class ColumnRef:
    """Where a configured column's value is in a staged row."""

    name: str
    """As the definition names it (``due``, ``dedupe_key``)."""
    kind: str
    """phone | timezone | state | text | scheduled_at | metadata | variable"""
    key: str
    header: str = ""
    """The column as written in the file (what a row's issue names)."""


_FIELD_KINDS: Final = {
    PHONE: "phone", TIMEZONE: "timezone", STATE: "state", TEXT: "text",
    SCHEDULED_AT: "scheduled_at", SCHEDULED_DATE: "scheduled_at", SCHEDULED_TIME: "scheduled_at",
}  # fmt: skip


def _ref(name: str, header: str, target: str) -> ColumnRef:
    kind = _FIELD_KINDS.get(target)
    if kind is not None:
        return ColumnRef(name, kind, header, header)
    if target.startswith(METADATA_PREFIX):
        return ColumnRef(name, "metadata", target[len(METADATA_PREFIX) :], header)
    return ColumnRef(name, "variable", target, header)


def resolve_columns(layout: CsvLayout, wanted: Iterable[str], why: str) -> list[ColumnRef]:
    """The columns a definition's ``why`` (``due``, ``dedupe_key``) names, in the file's ``layout``: by the name
    a column has after mapping (a variable, ``metadata.<key>``, ``phone``, …) or by its header, as written or
    normalized (``appointment_date`` names ``Appointment Date``), as campaigns' ``dedupe_key`` does. A name the
    file lacks, or a column the mapping drops, raises :class:`CsvFileError` naming it."""
    assignments = layout.mapping or tuple((c, normalize_header(c)) for c in layout.columns)
    refs: list[ColumnRef] = []
    missing: list[str] = []
    for name in wanted:
        normalized = normalize_header(name)
        if normalized in PHONE_ALIASES or normalized == PHONE:
            refs.append(ColumnRef(name, "phone", layout.phone_column, layout.phone_column))
            continue
        by_target = [(h, t) for h, t in assignments if t != DROP and normalize_header(t) == normalized]
        by_header = [(h, t) for h, t in assignments if normalize_header(h) == normalized]
        found = by_target or by_header
        if not found:
            missing.append(name)
            continue
        header, target = found[0]
        if target == DROP:
            raise CsvFileError(f"column {name!r} named in {why} is dropped by the mapping or drop_columns: it "
                               "cannot be read")  # fmt: skip
        refs.append(_ref(name, header, target))
    if missing:
        found_columns = ", ".join(repr(c) for c in layout.columns)
        raise CsvFileError(f"column {', '.join(repr(m) for m in missing)} named in {why} is not in the file "
                           f"(columns: {found_columns})")  # fmt: skip
    return refs


def _value(ref: ColumnRef, row: tuple[Any, ...]) -> str:
    _, _, phone, zone, state, body, scheduled_at, metadata, variables = row
    if ref.kind == "phone":
        return str(phone)
    if ref.kind == "timezone":
        return str(zone or "")
    if ref.kind == "state":
        return str(state or "")
    if ref.kind == "text":
        return str(body or "")
    if ref.kind == "scheduled_at":
        return scheduled_at.astimezone(UTC).isoformat() if scheduled_at else ""
    source = metadata if ref.kind == "metadata" else variables
    return str((source or {}).get(ref.key, ""))


class _BadCell(ValueError):
    """A due cell that cannot be read: its column, its value, and why."""

    def __init__(self, ref: ColumnRef, value: str, reason: str) -> None:
        super().__init__(reason)
        self.ref = ref
        self.value = value


class RunStaging:
    """The importer hook for one file: due times, past rows, and cross-run dedupe keys (see module docstring)."""

    def __init__(
        self,
        definition: RecurringDefinition,
        run_id: uuid.UUID,
        *,
        now: datetime,
        due_refs: list[ColumnRef],
        key_refs: list[ColumnRef],
        default_zone: str,
        start_at: datetime,
        date_order: str | None = None,
    ) -> None:
        self.definition = definition
        self.rule = parse_due(definition.due)
        self.run_id = run_id
        self.now = now
        self.due_refs = due_refs
        """The due column, or its date column and time column (none: due at the run)."""
        self.date_order = date_order
        self.key_refs = key_refs
        self.default_zone = default_zone
        self.start_at = start_at
        self.past = 0

    def _due(self, row: tuple[Any, ...], zone: str) -> datetime:
        """The row's due time; a cell that cannot be read raises :class:`_BadCell` naming its column."""
        values = [_value(r, row) for r in self.due_refs]
        try:
            return due_time(self.rule, values[0], zone, values[1] if len(values) > 1 else None, self.date_order)
        except DueCellError as exc:  # a date column and a time column: the one at fault
            raise _BadCell(self.due_refs[exc.cell], values[exc.cell], str(exc)) from None
        except (ValueError, OverflowError) as exc:
            raise _BadCell(self.due_refs[0], values[0], str(exc)) from None

    def __call__(self, session: Session, campaign_id: uuid.UUID) -> None:
        conn = session.connection().connection.driver_connection
        assert conn is not None
        issues: list[tuple[int, str, str, str, str]] = []
        keep: list[tuple[int, str, str, datetime, str | None, str | None]] = []
        first_row: dict[str, int] = {}
        key_column = ",".join(r.name for r in self.key_refs)
        due_column = self.due_refs[0].header if self.due_refs else "scheduled_at"
        with conn.cursor() as cur:
            rows = cur.execute(
                """SELECT s.row_number, s.id, s.phone, s.timezone, s.state, s.body, s.scheduled_at, s.metadata,
                          s.variables
                   FROM import_staging s
                   WHERE NOT EXISTS (SELECT 1 FROM import_staging_issues i WHERE i.row_number = s.row_number)
                   ORDER BY s.row_number"""
            ).fetchall()
            for row in rows:
                row_number, event_id = row[0], row[1]
                zone = row[3] or self.default_zone
                when = row[6]
                if self.due_refs:
                    try:
                        when = self._due(row, zone)
                    except _BadCell as exc:
                        issues.append((row_number, exc.ref.header, exc.value[:200], f"due time: {exc}", "rejected"))
                        continue
                past: str | None = None
                if when is None:
                    when = self.start_at  # due at the run, like an upload without scheduled_at
                elif when <= self.now:
                    local = when.astimezone(zoneinfo.ZoneInfo(zone))
                    past = f"reminder time {local:%Y-%m-%d %H:%M %Z} ({self.definition.due}) is already past"
                key = key_text([_value(r, row) for r in self.key_refs])
                if key in first_row:
                    issues.append((row_number, key_column, key[:200],
                                   f"same dedupe key as row {first_row[key]}", "duplicate"))  # fmt: skip
                    continue
                first_row[key] = row_number
                value = (" ".join(_value(r, row) for r in self.due_refs) or iso(when) or "")[:200]
                keep.append((row_number, str(event_id), key, when, past, value))
            if issues:
                with cur.copy("COPY import_staging_issues (row_number, col, value, reason, kind) FROM STDIN") as copy:
                    for issue in issues:
                        copy.write_row(issue)
            cur.execute(
                """CREATE TEMP TABLE recurring_staging (
                       row_number integer, id uuid, key text, due timestamptz, past text, value text
                   ) ON COMMIT DROP"""
            )
            with cur.copy("COPY recurring_staging FROM STDIN") as copy:
                for item in keep:
                    copy.write_row(item)
            params = {
                "definition": self.definition.id,
                "run": self.run_id,
                "campaign": campaign_id,
                "now": self.now,
                "key_column": key_column,
                "due_column": due_column,
            }
            # A reminder some earlier run scheduled is a duplicate, whether or not its time has passed since.
            cur.execute(
                """INSERT INTO import_staging_issues (row_number, col, value, reason, kind)
                   SELECT r.row_number, %(key_column)s, left(r.key, 200),
                          'already scheduled by an earlier run (same dedupe key)', 'duplicate'
                   FROM recurring_staging r
                   WHERE EXISTS (SELECT 1 FROM recurring_reminders m
                                 WHERE m.definition_id = %(definition)s AND m.dedupe_key = r.key)""",
                params,
            )
            cur.execute(
                """DELETE FROM recurring_staging r USING import_staging_issues i WHERE i.row_number = r.row_number"""
            )
            # Reported, not scheduled (kind 'rejected' so the campaign's counts add up; the run counts them apart).
            cur.execute(
                """INSERT INTO import_staging_issues (row_number, col, value, reason, kind)
                   SELECT row_number, %(due_column)s, value, past, 'rejected' FROM recurring_staging
                   WHERE past IS NOT NULL""",
                params,
            )
            self.past += cur.rowcount
            cur.execute("DELETE FROM recurring_staging WHERE past IS NOT NULL")
            # Claim the remaining keys at once. The primary key is the guard: a key a concurrent run claimed first
            # conflicts, and that row becomes a duplicate instead of an event.
            cur.execute(
                """WITH claimed AS (
                       INSERT INTO recurring_reminders
                           (definition_id, dedupe_key, event_id, run_id, campaign_id, scheduled_at, created_at)
                       SELECT %(definition)s, key, id, %(run)s, %(campaign)s, due, %(now)s FROM recurring_staging
                       ON CONFLICT DO NOTHING
                       RETURNING dedupe_key)
                   INSERT INTO import_staging_issues (row_number, col, value, reason, kind)
                   SELECT r.row_number, %(key_column)s, left(r.key, 200),
                          'already scheduled by an earlier run (same dedupe key)', 'duplicate'
                   FROM recurring_staging r WHERE r.key NOT IN (SELECT dedupe_key FROM claimed)""",
                params,
            )
            cur.execute(
                """UPDATE import_staging s SET scheduled_at = r.due FROM recurring_staging r
                   WHERE r.row_number = s.row_number"""
            )
            cur.execute("DROP TABLE recurring_staging")
