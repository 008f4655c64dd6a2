"""Recurring reminder campaigns: a definition (cron + zone, a CSV source, a campaign template, when each row is
due, a dedupe key) runs on its schedule and turns each new source file into a campaign.

Exactly once per tick, in PostgreSQL:

* A definition's ``next_run_at`` is stored. A tick locks the due definition row (``FOR UPDATE SKIP LOCKED``), so
  competing beat/worker processes skip it while one runs; the run row is unique on ``(definition, tick)`` as the
  second guard; the run, its campaigns, events and reminder keys and the new ``next_run_at`` commit together.
  A process that dies mid-run leaves nothing behind and the next tick runs it again.
* After downtime the latest passed tick runs once (``catch_up``, with the number of ticks it folds in) and
  ``next_run_at`` jumps past now: never a burst of missed runs.
* Fire times are computed on local wall time in the definition's IANA zone, so ``0 7 * * *`` in
  America/New_York is 12:00 UTC in winter and 11:00 UTC in summer. A wall time that does not exist (the
  spring-forward gap) runs right after the gap; one that happens twice (fall back) runs once, the first time.
* A run reads every matching file whose content it has not read before (by SHA-256); none: it records a
  ``no_new_file`` run and creates nothing. Each new file becomes one campaign, imported exactly like an upload
  (``importer.load_call_list``) with a hook that sets each row's due time, reports rows whose time is already
  past, and claims each row's dedupe key in ``recurring_reminders`` (primary key per definition): a reminder
  already scheduled by any earlier run is reported as a duplicate, never scheduled twice.

Due expressions: ``now``; ``COLUMN`` (a date-time column); ``COLUMN - 24h`` / ``COLUMN + 1d12h``;
``COLUMN 09:00 local`` (that day at 09:00 in the row's zone) or ``COLUMN - 1d 18:30 America/Chicago``.
"local" is the row's ``timezone`` column, else the template's ``timezone``, else the definition's zone; the
same zone reads date-times written without an offset. The campaign's calling window still applies at dispatch.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import shlex
import tempfile
import tomllib
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

from croniter import croniter
from sqlalchemy import func, select, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from campaigns import campaign as campaign_service
from campaigns import importing as importer
from campaigns import windows
from campaigns.db import unit_of_work
from campaigns.errors import Conflict, FieldError, NotFound, ValidationFailed
from campaigns.ids import uuid7
from campaigns.importing import PHONE_ALIASES, CsvFileError, open_call_list
from campaigns.models import (
    Campaign,
    RecurringDefinition,
    RecurringFile,
    RecurringRun,
)
from campaigns.suppression import mark_suppressed_rows

log = logging.getLogger(__name__)

Now = Callable[[], datetime]
MarkSuppressed = importer.StagingHook

DEFINITION_FIELDS = ("name", "cron", "timezone", "source", "due", "dedupe_key", "enabled", "campaign")
TEMPLATE_FORBIDDEN = {"name": "is the definition's name plus the run", "start_at": "is the time of each run"}
MAX_KEY_CHARS = 512
MAX_TICKS_COUNTED = 100_000
SPOOL_BYTES = 8 * 1024 * 1024


# --- due expressions ----------------------------------------------------------------------------------------

_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class DueRule:
    """When a row is due: at the run (``column is None``), or relative to a date/date-time column."""

    column: str | None
    offset: timedelta = timedelta(0)
    at: time | None = None
    """Wall-clock time on the (offset) day, in ``zone``."""
    zone: str | None = None
    """IANA zone of ``at``; ``None``: the row's local zone."""


def parse_duration(value: str) -> timedelta:
    """``24h``, ``1d12h``, ``90m``, ``2w`` → a timedelta. Raises ValueError."""
    match = _DURATION.match(value.strip().lower())
    if not value.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration (use w, d, h, m, s, e.g. 24h or 1d12h)")
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_due(expression: object) -> DueRule:
    """Parse a due expression (see the module docstring). Raises ValueError with a message for the operator."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError('is required: "now", or a column with an optional offset, e.g. "appointment_at - 24h"')
    try:
        tokens = shlex.split(expression)
    except ValueError as exc:
        raise ValueError(f"{expression!r} cannot be read: {exc}") from None
    if len(tokens) == 1 and tokens[0].lower() == "now":
        return DueRule(column=None)
    column, rest = tokens[0], tokens[1:]
    offset = timedelta(0)
    if rest and rest[0][:1] in "+-":
        sign = -1 if rest[0][0] == "-" else 1
        if len(rest[0]) > 1:
            amount, rest = rest[0][1:], rest[1:]
        elif len(rest) > 1:
            amount, rest = rest[1], rest[2:]
        else:
            raise ValueError(f"{expression!r}: a duration must follow {rest[0]!r}, e.g. 24h")
        offset = sign * parse_duration(amount)
    at: time | None = None
    zone: str | None = None
    if rest:
        clock = _CLOCK.match(rest[0])
        if clock is None or len(rest) != 2:
            raise ValueError(
                f"{expression!r}: expected COLUMN [+|- DURATION] [HH:MM local|HH:MM ZONE], "
                'e.g. "appointment_at - 24h" or "due_date 09:00 local"'
            )
        at = time(int(clock.group(1)), int(clock.group(2)))
        if rest[1].lower() != "local":
            if not windows.is_timezone(rest[1]):
                raise ValueError(f"{expression!r}: {rest[1]!r} is not 'local' or an IANA time zone")
            zone = rest[1]
        if offset % timedelta(days=1):
            raise ValueError(f"{expression!r}: with a time of day the offset must be whole days, e.g. - 1d")
    if not column or column[:1] in "+-":
        raise ValueError(f"{expression!r}: the first word must be a column name or 'now'")
    return DueRule(column=column, offset=offset, at=at, zone=zone)


_US_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y")


def parse_when(value: str) -> datetime | date:
    """A date or date-time cell: ISO 8601 (``2026-11-22``, ``2026-11-22 14:30``, with or without offset) or US
    ``11/22/2026 2:30 PM``. Raises ValueError."""
    raw = value.strip()
    if not raw:
        raise ValueError("is empty")
    try:
        if len(raw) == 10 and raw[4] == "-":
            return date.fromisoformat(raw)
        return datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        pass
    for fmt in _US_FORMATS:
        try:
            parsed = datetime.strptime(raw, fmt)  # noqa: DTZ007 (naive on purpose: read in the row's zone below)
        except ValueError:
            continue
        return parsed.date() if fmt == "%m/%d/%Y" else parsed
    raise ValueError("is not a date or date-time (ISO 8601 such as 2026-11-22T14:30, or 11/22/2026 2:30 PM)")


def local_instant(day: date, at: time, zone: str) -> datetime:
    """``day`` at wall time ``at`` in ``zone``, as UTC. A time in the spring-forward gap lands right after it;
    a repeated time (fall back) is its first occurrence (PEP 495 ``fold=0``)."""
    return datetime.combine(day, at, tzinfo=zoneinfo.ZoneInfo(zone)).astimezone(UTC)


def due_time(rule: DueRule, value: str, zone: str) -> datetime:
    """The due instant of one row given its cell ``value`` and its local ``zone``. Raises ValueError."""
    parsed = parse_when(value)
    tz = zoneinfo.ZoneInfo(zone)
    if rule.at is not None:
        day = parsed.astimezone(tz).date() if isinstance(parsed, datetime) and parsed.tzinfo else parsed
        if isinstance(day, datetime):
            day = day.date()
        return local_instant(day + rule.offset, rule.at, rule.zone or zone)
    if isinstance(parsed, datetime):
        instant = parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
    else:
        instant = datetime.combine(parsed, time(0), tzinfo=tz)
    return instant.astimezone(UTC) + rule.offset


# --- schedules ------------------------------------------------------------------------------------------------


def check_cron(expression: object) -> str | None:
    """``None`` when valid, else what is wrong (standard 5-field cron, or @daily/@hourly/...)."""
    if not isinstance(expression, str) or not expression.strip():
        return 'is required, e.g. "0 7 * * *" (daily at 07:00)'
    fields = expression.split()
    if not expression.strip().startswith("@") and len(fields) != 5:
        return f"{expression!r} must have 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression"
    return None


def next_fire(cron: str, zone: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``, as UTC.

    Matching is on local wall time in ``zone`` (cron semantics), mapped to instants with ``zoneinfo``: no offset
    is ever cached, so both DST changes are handled by construction.
    """
    tz = zoneinfo.ZoneInfo(zone)
    local = after.astimezone(tz).replace(tzinfo=None)
    it = croniter(cron, local - timedelta(minutes=1))
    for _ in range(100_000):
        candidate = it.get_next(datetime).replace(tzinfo=tz).astimezone(UTC)
        if candidate > after:
            return candidate  # type: ignore[no-any-return]
    raise ValueError(f"cron {cron!r} never fires after {after.isoformat()}")


def upcoming(cron: str, zone: str, after: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` fire times after ``after`` (UTC)."""
    times: list[datetime] = []
    at = after
    for _ in range(count):
        at = next_fire(cron, zone, at)
        times.append(at)
    return times


def latest_fire(cron: str, zone: str, first: datetime, now: datetime) -> tuple[datetime, int]:
    """The last fire time in ``[first, now]`` (``first`` is a fire time ≤ now) and how many earlier fire times
    in that range it stands for (the missed ticks a catch-up run folds in; counted up to a bound)."""
    latest, missed = first, 0
    while missed < MAX_TICKS_COUNTED:
        following = next_fire(cron, zone, latest)
        if following > now:
            return latest, missed
        latest, missed = following, missed + 1
    # Absurd downtime for the schedule (e.g. a year of minutely ticks): jump to the end without counting.
    tz = zoneinfo.ZoneInfo(zone)
    it = croniter(cron, now.astimezone(tz).replace(tzinfo=None) + timedelta(minutes=1))
    while True:
        candidate = it.get_prev(datetime).replace(tzinfo=tz).astimezone(UTC)
        if candidate <= now:
            return candidate, missed


# --- definitions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """A validated definition (from a TOML file or the API)."""

    name: str
    cron: str
    timezone: str
    source: str
    """Absolute path or glob."""
    due: str
    dedupe_key: tuple[str, ...]
    campaign: dict[str, Any]
    enabled: bool
    origin: str
    origin_path: str | None = None

    @property
    def rule(self) -> DueRule:
        return parse_due(self.due)

    def spec_hash(self) -> str:
        spec = {
            "name": self.name, "cron": self.cron, "timezone": self.timezone, "source": self.source, "due": self.due,
            "dedupe_key": list(self.dedupe_key), "campaign": self.campaign, "enabled": self.enabled,
            "origin_path": self.origin_path,
        }  # fmt: skip
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


class DefinitionFileError(Exception):
    """A TOML definition file that cannot be used; ``str()`` names the file and every bad field."""

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        super().__init__("\n".join(f"{self.path}: {p}" for p in self.problems))


def _pointer_name(pointer: str) -> str:
    return pointer.strip("/").replace("/", ".") or "(file)"


def file_origin(path: Path) -> str:
    """How a definition file is known: its absolute path as listed, symlinks *not* resolved.

    A Kubernetes ConfigMap volume (deploy/k8s) holds each file as a symlink into a versioned directory that
    every update replaces; its listed path is the one thing that stays the same.
    """
    return os.path.abspath(path)


def _taken_over(stored: str | None, new: str | None) -> bool:
    """Whether the file at ``new`` may take over a definition stored as coming from ``stored``: that file is
    gone, or it is ``new`` itself under its resolved name (as versions before ``file_origin`` stored it)."""
    if stored is None:
        return True
    if new is None:
        return False
    return not os.path.lexists(stored) or os.path.realpath(stored) == os.path.realpath(new)


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([os.path.realpath(path), os.path.realpath(root)]) == os.path.realpath(root)
    except ValueError:
        return False


def _glob_base(pattern: str) -> str:
    """The directory part of a glob before its first wildcard."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return str(Path(*parts)) if parts else "/"


def validate_definition(
    body: object,
    *,
    now: datetime,
    origin: str,
    base_dir: Path,
    allowed_root: Path | None = None,
    origin_path: str | None = None,
) -> Definition:
    """Check a definition (all problems at once) and normalize it. Raises ``ValidationFailed`` whose pointers
    name the fields (``/cron``, ``/campaign/retry_interval_secs``…).

    A relative ``source`` is relative to ``base_dir``; with ``allowed_root`` the source must stay inside it
    (definitions created through the API must not read arbitrary files of the server).
    """
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("", "a recurring definition must be an object (a TOML table)")])
    errors: list[FieldError] = []

    def bad(name: str, detail: str) -> None:
        errors.append(FieldError(f"/{name}", detail))

    for key in sorted(set(body) - set(DEFINITION_FIELDS)):
        bad(key, f"is not a known field (expected {', '.join(DEFINITION_FIELDS)})")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        bad("name", "is required (a unique name for the definition)")
    elif len(name.strip()) > 200 or "/" in name:
        bad("name", "must be at most 200 characters, without '/'")
    cron = body.get("cron")
    problem = check_cron(cron)
    if problem:
        bad("cron", problem)
    zone = body.get("timezone")
    if not windows.is_timezone(zone):
        bad("timezone", f"{zone!r} is not an IANA time zone name such as America/New_York" if zone else
            "is required: the IANA zone the cron expression is read in, e.g. America/New_York")  # fmt: skip
    source = body.get("source")
    resolved_source = ""
    if not isinstance(source, str) or not source.strip():
        bad("source", "is required: a CSV path or glob, e.g. exports/appointments-*.csv")
    else:
        resolved_source = str(Path(base_dir, os.path.expanduser(source.strip())))
        resolved_source = os.path.normpath(resolved_source)
        if allowed_root is not None and not _inside(_glob_base(resolved_source), str(allowed_root)):
            bad("source", f"must be inside {allowed_root} (CAMPAIGNS_RECURRING_DIR)")
    due_raw = body.get("due", "now")
    rule: DueRule | None = None
    try:
        rule = parse_due(due_raw)
    except ValueError as exc:
        bad("due", str(exc))
    dedupe = body.get("dedupe_key")
    keys: tuple[str, ...] = ()
    if dedupe is None:
        if rule is not None and rule.column is not None:
            keys = ("phone", rule.column)
        elif rule is not None:
            bad("dedupe_key", 'is required with due = "now": the columns that identify one reminder, '
                'e.g. ["phone", "appointment_id"]')  # fmt: skip
    elif (
        not isinstance(dedupe, list)
        or not dedupe
        or not all(isinstance(k, str) and k.strip() for k in dedupe)
        or len({k.strip().casefold() for k in dedupe}) != len(dedupe)
    ):
        bad("dedupe_key", 'must be a non-empty list of distinct column names, e.g. ["phone", "appointment_at"]')
    else:
        keys = tuple(k.strip() for k in dedupe)
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        bad("enabled", "must be true or false")
    template = body.get("campaign")
    if not isinstance(template, dict):
        bad("campaign", "is required: a table of campaign settings (assistant_id, telnyx_agent_target, ...)")
        template = {}
    else:
        for key, why in TEMPLATE_FORBIDDEN.items():
            if key in template:
                bad(f"campaign/{key}", f"cannot be set: it {why}")
        try:
            campaign_service.validate_settings(
                {k: v for k, v in template.items() if k not in TEMPLATE_FORBIDDEN}
                | {"name": name.strip() if isinstance(name, str) and name.strip() else "recurring"},
                now=now,
            )
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(name, str) and isinstance(cron, str) and isinstance(zone, str)
    return Definition(
        name=name.strip(),
        cron=" ".join(cron.split()),
        timezone=zone,
        source=resolved_source,
        due=str(due_raw).strip(),
        dedupe_key=keys,
        campaign=dict(template),
        enabled=bool(enabled),
        origin=origin,
        origin_path=origin_path,
    )


def load_definition_file(path: Path, *, now: datetime) -> Definition:
    """Read and validate one TOML definition. Raises ``DefinitionFileError`` naming the file and fields."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DefinitionFileError(path, [f"cannot be read: {exc.strerror or exc}"]) from None
    try:
        body = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DefinitionFileError(path, ["is not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionFileError(path, [f"invalid TOML: {exc}"]) from None
    try:
        origin_path = file_origin(path)
        return validate_definition(
            body, now=now, origin="file", base_dir=Path(origin_path).parent, origin_path=origin_path
        )
    except ValidationFailed as exc:
        raise DefinitionFileError(path, [f"{_pointer_name(e.pointer)}: {e.detail}" for e in exc.errors]) from None


# --- persistence ----------------------------------------------------------------------------------------------


def upsert_definition(session: Session, definition: Definition, *, now: datetime) -> tuple[RecurringDefinition, str]:
    """Create or update a definition by name; returns it and ``created``, ``updated`` or ``unchanged``.

    A changed schedule (or re-enabling) recomputes ``next_run_at`` from now; otherwise the stored one is kept,
    so re-syncing an unchanged file never moves or repeats a tick. A file definition cannot be replaced through
    the API (and vice versa): ``Conflict``.
    """
    spec = definition.spec_hash()
    current = session.execute(
        select(RecurringDefinition.spec_hash, RecurringDefinition.origin, RecurringDefinition.origin_path).where(
            RecurringDefinition.name == definition.name
        )
    ).one_or_none()
    if current is not None and tuple(current) == (spec, definition.origin, definition.origin_path):
        # Unchanged (every tick re-reads the files): no row lock, so a sync never waits behind a long run.
        unchanged = session.scalars(select(RecurringDefinition).where(RecurringDefinition.name == definition.name))
        return unchanged.one(), "unchanged"
    next_run = next_fire(definition.cron, definition.timezone, now) if definition.enabled else None
    inserted = session.execute(
        insert(RecurringDefinition)
        .values(
            id=uuid.uuid4(),
            name=definition.name,
            cron=definition.cron,
            timezone=definition.timezone,
            source=definition.source,
            due=definition.due,
            dedupe_key=list(definition.dedupe_key),
            campaign=definition.campaign,
            enabled=definition.enabled,
            origin=definition.origin,
            origin_path=definition.origin_path,
            spec_hash=spec,
            next_run_at=next_run,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(RecurringDefinition.id)
    ).scalar_one_or_none()
    row = session.scalars(
        select(RecurringDefinition)
        .where(RecurringDefinition.name == definition.name)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if inserted is not None:
        return row, "created"
    if row.origin != definition.origin:
        where = f"the file {row.origin_path}" if row.origin == "file" else "the API"
        raise Conflict(f"recurring definition {definition.name!r} is defined by {where}; change it there")
    moved = row.origin == "file" and row.origin_path != definition.origin_path
    if moved:
        if not _taken_over(row.origin_path, definition.origin_path):
            raise Conflict(f"recurring definition {definition.name!r} is already defined by the file {row.origin_path}")
        row.origin_path = definition.origin_path
        row.updated_at = now
    if row.spec_hash == spec:
        return row, "updated" if moved else "unchanged"
    reschedule = (row.cron, row.timezone) != (definition.cron, definition.timezone) or (
        definition.enabled and not row.enabled
    )
    row.source = definition.source
    row.due = definition.due
    row.dedupe_key = list(definition.dedupe_key)
    row.campaign = definition.campaign
    row.cron = definition.cron
    row.timezone = definition.timezone
    row.enabled = definition.enabled
    row.spec_hash = spec
    row.updated_at = now
    if not definition.enabled:
        row.next_run_at = None
    elif reschedule or row.next_run_at is None:
        row.next_run_at = next_run
    session.flush()
    return row, "updated"


def definition_of(row: RecurringDefinition) -> Definition:
    return Definition(
        name=row.name, cron=row.cron, timezone=row.timezone, source=row.source, due=row.due,
        dedupe_key=tuple(row.dedupe_key), campaign=dict(row.campaign), enabled=row.enabled, origin=row.origin,
        origin_path=row.origin_path,
    )  # fmt: skip


def get_definition(session: Session, ref: str, *, lock: bool = False) -> RecurringDefinition:
    """By name or id. ``lock``: ``FOR UPDATE NOWAIT`` (a run in progress holds the row: ``Conflict``)."""
    query = select(RecurringDefinition)
    try:
        query = query.where(RecurringDefinition.id == uuid.UUID(ref))
    except ValueError:
        query = query.where(RecurringDefinition.name == ref)
    if lock:
        query = query.with_for_update(nowait=True)
    try:
        row = session.scalars(query).one_or_none()
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise Conflict(f"a run of recurring definition {ref!r} is in progress; try again when it ends") from None
        raise
    if row is None:
        raise NotFound(f"recurring definition {ref}")
    return row


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def sync_directory(factory: sessionmaker[Session], directory: Path, *, now: datetime) -> SyncReport:
    """Bring the ``file`` definitions in the database in line with ``directory/*.toml``.

    A file that fails validation keeps its previous (good) version running and is reported; a file that was
    removed disables its definition (history is kept). Safe to run from several processes at once.
    """
    report = SyncReport()
    seen: dict[str, Path] = {}
    paths = sorted(directory.glob("*.toml")) if directory.is_dir() else []
    if not directory.is_dir():
        report.errors.append(f"{directory}: recurring directory does not exist")
    for path in paths:
        try:
            definition = load_definition_file(path, now=now)
        except DefinitionFileError as exc:
            report.errors.append(str(exc))
            continue
        if definition.name in seen:
            report.errors.append(f"{path}: name: {definition.name!r} is already defined by {seen[definition.name]}")
            continue
        seen[definition.name] = path
        try:
            with unit_of_work(factory) as s:
                _, status = upsert_definition(s, definition, now=now)
        except Conflict as exc:
            report.errors.append(f"{path}: {exc}")
            continue
        if status == "created":
            report.created.append(definition.name)
        elif status == "updated":
            report.updated.append(definition.name)
    present = {file_origin(p) for p in paths}
    if directory.is_dir():
        with unit_of_work(factory) as s:
            rows = s.scalars(
                select(RecurringDefinition)
                .where(RecurringDefinition.origin == "file", RecurringDefinition.enabled)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                path_ = row.origin_path or ""
                if _inside(path_, str(directory)) and path_ not in present:
                    row.enabled = False
                    row.next_run_at = None
                    row.spec_hash = ""
                    row.updated_at = now
                    report.disabled.append(row.name)
    for error in report.errors:
        log.error("recurring definition not loaded: %s", error)
    return report


# --- runs -------------------------------------------------------------------------------------------------------


@dataclass
class _Counts:
    rows_total: int = 0
    rows_created: int = 0
    rows_rejected: int = 0
    rows_past: int = 0
    rows_duplicate: int = 0
    rows_suppressed: int = 0

    def add(self, other: _Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def matching_files(source: str) -> list[Path]:
    """Regular files matching ``source`` (a path or glob), oldest first (modification time, then name)."""
    names = glob.glob(source) if glob.has_magic(source) else [source]
    files = [Path(n) for n in names if os.path.isfile(n)]
    return sorted(files, key=lambda p: (p.stat().st_mtime, str(p)))


def _snapshot(path: Path) -> tuple[IO[bytes], str, int]:
    """Copy the file once (a consistent snapshot even if it is being rewritten) and hash what was copied."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (the caller closes it)
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
            spool.write(block)
            size += len(block)
    spool.seek(0)
    return spool, digest.hexdigest(), size


@dataclass(frozen=True)
class _ColumnRef:
    """Where a configured column's value is in a staged row."""

    name: str
    kind: str
    """phone | timezone | state | text | scheduled_at | metadata | variable"""
    key: str


def _resolve_columns(columns: list[str], phone_column: str, wanted: Iterable[str], why: str) -> list[_ColumnRef]:
    by_fold = {c.casefold(): c for c in columns}
    refs: list[_ColumnRef] = []
    missing: list[str] = []
    for name in wanted:
        folded = name.casefold()
        if folded in PHONE_ALIASES:
            refs.append(_ColumnRef(name, "phone", phone_column))
            continue
        actual = by_fold.get(folded)
        if actual is None:
            missing.append(name)
        elif folded == phone_column.casefold():
            refs.append(_ColumnRef(name, "phone", actual))
        elif folded in ("timezone", "state", "text", "scheduled_at"):
            refs.append(_ColumnRef(name, folded, actual))
        elif folded.startswith("metadata."):
            refs.append(_ColumnRef(name, "metadata", actual[len("metadata.") :].strip()))
        else:
            refs.append(_ColumnRef(name, "variable", actual))
    if missing:
        found = ", ".join(repr(c) for c in columns)
        raise CsvFileError(f"column {', '.join(repr(m) for m in missing)} named in {why} is not in the file "
                           f"(columns: {found})")  # fmt: skip
    return refs


def _value(ref: _ColumnRef, row: tuple[Any, ...]) -> str:
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


def _dedupe_text(values: list[str]) -> str:
    key = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    if len(key) > MAX_KEY_CHARS:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


class _Staging:
    """The importer hook for one file: due times, past rows, and cross-run dedupe keys (see module docstring)."""

    def __init__(
        self,
        definition: RecurringDefinition,
        run_id: uuid.UUID,
        *,
        now: datetime,
        due_ref: _ColumnRef | None,
        key_refs: list[_ColumnRef],
        default_zone: str,
        start_at: datetime,
        then: MarkSuppressed | None,
    ) -> None:
        self.definition = definition
        self.rule = parse_due(definition.due)
        self.run_id = run_id
        self.now = now
        self.due_ref = due_ref
        self.key_refs = key_refs
        self.default_zone = default_zone
        self.start_at = start_at
        self.then = then
        self.past = 0

    def __call__(self, session: Session, campaign_id: uuid.UUID) -> None:
        if self.then is not None:
            self.then(session, campaign_id)
        conn = session.connection().connection.driver_connection
        assert conn is not None
        issues: list[tuple[int, str, str, str, str]] = []
        keep: list[tuple[int, str, str, datetime, str | None, str | None]] = []
        first_row: dict[str, int] = {}
        key_column = ",".join(r.name for r in self.key_refs)
        due_column = self.due_ref.name if self.due_ref else "scheduled_at"
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
                if self.due_ref is not None:
                    raw = _value(self.due_ref, row)
                    try:
                        when = due_time(self.rule, raw, zone)
                    except (ValueError, OverflowError) as exc:
                        issues.append((row_number, self.due_ref.name, raw[:200], f"due time: {exc}", "rejected"))
                        continue
                past: str | None = None
                if when is None:
                    when = self.start_at  # due at the run, like an upload without scheduled_at
                elif when <= self.now:
                    local = when.astimezone(zoneinfo.ZoneInfo(zone))
                    past = f"reminder time {local:%Y-%m-%d %H:%M %Z} ({self.definition.due}) is already past"
                key = _dedupe_text([_value(r, row) for r in self.key_refs])
                if key in first_row:
                    issues.append((row_number, key_column, key[:200],
                                   f"same dedupe key as row {first_row[key]}", "duplicate"))  # fmt: skip
                    continue
                first_row[key] = row_number
                value = (_value(self.due_ref, row) if self.due_ref else _iso(when) or "")[:200]
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


@dataclass
class RunResult:
    run_id: uuid.UUID
    definition: str
    kind: str
    status: str
    message: str
    tick_at: datetime | None
    campaign_ids: list[uuid.UUID]
    counts: dict[str, int]


def _run_files(
    session: Session,
    definition: RecurringDefinition,
    run: RecurringRun,
    *,
    now: datetime,
    force: bool,
    allowed_root: str | None,
    mark_suppressed: MarkSuppressed | None,
) -> list[uuid.UUID]:
    """Read the new source files into one campaign each; fill in ``run``. Returns the campaigns created."""
    files = matching_files(definition.source)
    if definition.origin == "api" and allowed_root is not None:
        files = [f for f in files if _inside(str(f), allowed_root)]
    if not files:
        run.status = "no_new_file"
        run.message = f"no new file: nothing matches {definition.source}"
        return []
    seen = set(session.scalars(select(RecurringFile.sha256).where(RecurringFile.definition_id == definition.id)).all())
    campaigns: list[uuid.UUID] = []
    totals = _Counts()
    notes: list[str] = []
    failures = 0
    taken: set[str] = set()
    template = {k: v for k, v in definition.campaign.items() if k not in TEMPLATE_FORBIDDEN}
    zone = template.get("timezone") or definition.timezone
    label = (run.tick_at or now).astimezone(zoneinfo.ZoneInfo(definition.timezone))
    for path in files:
        try:
            spool, digest, size = _snapshot(path)
        except OSError as exc:
            notes.append(f"{path.name}: cannot be read ({exc.strerror or exc})")
            failures += 1
            continue
        with spool:
            if digest in taken or (digest in seen and not force):
                continue
            taken.add(digest)
            entry: dict[str, Any] = {"path": str(path), "sha256": digest, "size": size, "campaign_id": None}
            counts = _Counts()
            campaign_id: uuid.UUID | None = None
            try:
                with session.begin_nested():
                    layout, _ = open_call_list(spool, default_region=template.get("default_region") or "US")
                    spool.seek(0)
                    rule = parse_due(definition.due)
                    due_ref = (
                        _resolve_columns(layout.columns, layout.phone_column, [rule.column], "due")[0]
                        if rule.column
                        else None
                    )
                    key_refs = _resolve_columns(layout.columns, layout.phone_column, definition.dedupe_key,
                                                "dedupe_key")  # fmt: skip
                    name = f"{definition.name} {label:%Y-%m-%d %H:%M %Z}"
                    if len(files) > 1:
                        name += f" {path.name}"
                    settings = campaign_service.validate_settings({**template, "name": name[:255]}, now=now)
                    campaign = campaign_service.create_campaign(session, settings, now=now)
                    campaign.recurring_run_id = run.id
                    hook = _Staging(
                        definition, run.id, now=now, due_ref=due_ref, key_refs=key_refs, default_zone=zone,
                        start_at=campaign.start_at, then=mark_suppressed,
                    )  # fmt: skip
                    report = importer.load_call_list(session, campaign, spool, now=now, hooks=[hook])
                    importer.apply_report(campaign, report, now=now)
                    campaign_id = campaign.id
                    counts = _Counts(
                        rows_total=report.rows_total,
                        rows_created=report.rows_accepted,
                        rows_rejected=report.rows_rejected - hook.past,
                        rows_past=hook.past,
                        rows_duplicate=report.rows_duplicate,
                        rows_suppressed=report.rows_suppressed,
                    )
            except (CsvFileError, ValidationFailed) as exc:
                entry["error"] = str(exc)
                notes.append(f"{path.name}: not imported: {exc}")
                failures += 1
            else:
                assert campaign_id is not None
                campaigns.append(campaign_id)
                entry["campaign_id"] = str(campaign_id)
                notes.append(
                    f"{path.name}: {counts.rows_total} rows, {counts.rows_created} scheduled, "
                    f"{counts.rows_rejected} rejected, {counts.rows_past} already past, "
                    f"{counts.rows_duplicate} duplicates, {counts.rows_suppressed} suppressed"
                )
            entry.update(counts.as_dict())
            totals.add(counts)
            run.files = [*run.files, entry]
            session.execute(
                insert(RecurringFile)
                .values(
                    definition_id=definition.id,
                    sha256=digest,
                    path=str(path),
                    size=size,
                    run_id=run.id,
                    campaign_id=campaign_id,
                    seen_at=now,
                )
                .on_conflict_do_update(
                    index_elements=["definition_id", "sha256"],
                    set_={"path": str(path), "run_id": run.id, "campaign_id": campaign_id, "seen_at": now},
                )
            )
    for name, value in totals.as_dict().items():
        setattr(run, name, value)
    if not run.files and not failures:
        run.status = "no_new_file"
        run.message = f"no new file: {len(files)} file(s) matching {definition.source} already read"
    elif not campaigns:
        run.status = "failed"
        run.message = "; ".join(notes)
    else:
        run.status = "completed"
        run.message = "; ".join(notes)
    return campaigns


def _execute(
    session: Session,
    definition: RecurringDefinition,
    *,
    kind: str,
    tick: datetime | None,
    missed: int,
    now: datetime,
    force: bool,
    allowed_root: str | None,
    mark_suppressed: MarkSuppressed | None,
) -> RunResult | None:
    run_id = session.execute(
        insert(RecurringRun)
        .values(
            id=uuid7(),  # time-ordered: the history lists runs in the order they ran
            definition_id=definition.id,
            kind=kind,
            tick_at=tick,
            missed_ticks=missed,
            started_at=now,
            finished_at=now,
            status="completed",
            message="",
            files=[],
            rows_total=0,
            rows_created=0,
            rows_rejected=0,
            rows_past=0,
            rows_duplicate=0,
            rows_suppressed=0,
        )
        .on_conflict_do_nothing(index_elements=["definition_id", "tick_at"])
        .returning(RecurringRun.id)
    ).scalar_one_or_none()
    if run_id is None:
        return None  # this tick already ran (the unique (definition, tick) guard)
    run = session.get_one(RecurringRun, run_id)
    try:
        campaigns = _run_files(
            session, definition, run, now=now, force=force, allowed_root=allowed_root, mark_suppressed=mark_suppressed
        )
    except Exception as exc:  # recorded, so that a broken definition fails visibly instead of retrying forever
        log.exception("recurring run failed", extra={"definition": definition.name})
        campaigns = []
        run.status = "failed"
        run.message = f"failed: {type(exc).__name__}: {exc}"
    run.finished_at = now
    definition.last_run_at = now
    session.flush()
    if missed:
        run.message = f"catch-up run standing for {missed + 1} ticks ({missed} missed while nothing ran); {run.message}"
    return RunResult(
        run_id=run.id, definition=definition.name, kind=kind, status=run.status, message=run.message,
        tick_at=tick, campaign_ids=campaigns,
        counts={k: getattr(run, k) for k in _Counts.__dataclass_fields__},
    )  # fmt: skip


def run_due(
    factory: sessionmaker[Session],
    *,
    now: Now,
    allowed_root: str | None = None,
    mark_suppressed: MarkSuppressed | None = mark_suppressed_rows,
) -> list[RunResult]:
    """Run every definition whose ``next_run_at`` has come, once each; safe to call from many processes.

    Each definition runs in its own transaction holding its row lock; the run's work and the new
    ``next_run_at`` commit together.
    """
    results: list[RunResult] = []
    skipped: set[uuid.UUID] = set()
    while True:
        with unit_of_work(factory) as s:
            at = now()
            definition = s.scalars(
                select(RecurringDefinition)
                .where(
                    RecurringDefinition.enabled,
                    RecurringDefinition.next_run_at <= at,
                    RecurringDefinition.id.not_in(skipped) if skipped else true(),
                )
                .order_by(RecurringDefinition.next_run_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if definition is None:
                return results
            assert definition.next_run_at is not None
            tick, missed = latest_fire(definition.cron, definition.timezone, definition.next_run_at, at)
            result = _execute(
                s, definition, kind="catch_up" if missed else "scheduled", tick=tick, missed=missed, now=at,
                force=False, allowed_root=allowed_root, mark_suppressed=mark_suppressed,
            )  # fmt: skip
            definition.next_run_at = next_fire(definition.cron, definition.timezone, at)
            skipped.add(definition.id)
        if result is not None:
            log.info("recurring run %s of %s: %s", result.kind, result.definition, result.message)
            results.append(result)


def run_now(
    factory: sessionmaker[Session],
    ref: str,
    *,
    now: datetime,
    force: bool = False,
    allowed_root: str | None = None,
    mark_suppressed: MarkSuppressed | None = mark_suppressed_rows,
) -> RunResult:
    """Run a definition now (a ``manual`` run; the schedule is unchanged). ``force`` re-reads files already read:
    reminders already scheduled are still skipped by their dedupe key."""
    with unit_of_work(factory) as s:
        definition = get_definition(s, ref, lock=True)
        result = _execute(
            s, definition, kind="manual", tick=None, missed=0, now=now, force=force, allowed_root=allowed_root,
            mark_suppressed=mark_suppressed,
        )  # fmt: skip
        assert result is not None
    return result


def tick(
    factory: sessionmaker[Session],
    *,
    now: Now,
    directory: str | None,
    mark_suppressed: MarkSuppressed | None = mark_suppressed_rows,
) -> list[RunResult]:
    """What beat does: sync the definition files, then run whatever is due."""
    if directory:
        sync_directory(factory, Path(directory), now=now())
    return run_due(factory, now=now, allowed_root=directory, mark_suppressed=mark_suppressed)


# --- the wire shape -----------------------------------------------------------------------------------------------


def serialize_run(session: Session, run: RecurringRun) -> dict[str, Any]:
    campaign_ids = session.scalars(
        select(Campaign.id).where(Campaign.recurring_run_id == run.id).order_by(Campaign.created_at, Campaign.id)
    ).all()
    return {
        "id": str(run.id),
        "kind": run.kind,
        "tick_at": _iso(run.tick_at),
        "missed_ticks": run.missed_ticks,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "status": run.status,
        "message": run.message,
        "rows": {
            "total": run.rows_total,
            "created": run.rows_created,
            "rejected": run.rows_rejected,
            "past": run.rows_past,
            "duplicate": run.rows_duplicate,
            "suppressed": run.rows_suppressed,
        },
        "files": run.files,
        "campaign_ids": [str(c) for c in campaign_ids],
    }


def serialize_definition(
    session: Session, row: RecurringDefinition, *, runs: int = 0, now: datetime | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(row.id),
        "name": row.name,
        "cron": row.cron,
        "timezone": row.timezone,
        "source": row.source,
        "due": row.due,
        "dedupe_key": row.dedupe_key,
        "campaign": row.campaign,
        "enabled": row.enabled,
        "origin": row.origin,
        "origin_path": row.origin_path,
        "next_run_at": _iso(row.next_run_at),
        "last_run_at": _iso(row.last_run_at),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }
    if now is not None and row.enabled:
        body["next_runs"] = [_iso(t) for t in upcoming(row.cron, row.timezone, now)]
    if runs:
        total = session.scalar(
            select(func.count()).select_from(RecurringRun).where(RecurringRun.definition_id == row.id)
        )
        history = session.scalars(
            select(RecurringRun)
            .where(RecurringRun.definition_id == row.id)
            .order_by(RecurringRun.started_at.desc(), RecurringRun.id.desc())
            .limit(runs)
        ).all()
        body["runs_total"] = int(total or 0)
        body["runs"] = [serialize_run(session, r) for r in history]
    return body


def list_definitions(session: Session) -> list[RecurringDefinition]:
    return list(session.scalars(select(RecurringDefinition).order_by(RecurringDefinition.name)))


__all__ = [
    "Definition",
    "DefinitionFileError",
    "DueRule",
    "RunResult",
    "SyncReport",
    "check_cron",
    "due_time",
    "get_definition",
    "latest_fire",
    "list_definitions",
    "load_definition_file",
    "matching_files",
    "next_fire",
    "parse_due",
    "parse_duration",
    "run_due",
    "run_now",
    "serialize_definition",
    "serialize_run",
    "sync_directory",
    "tick",
    "upcoming",
    "upsert_definition",
    "validate_definition",
]
