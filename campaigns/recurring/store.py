"""Definitions in the database: create or update by name, look up, list, delete, the last run of each, and the
sync of a directory of definition files."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from campaigns.db import unit_of_work
from campaigns.errors import Conflict, NotFound
from campaigns.models import Campaign, RecurringDefinition, RecurringRun
from campaigns.recurring.definitions import (
    Definition,
    DefinitionFileError,
    file_origin,
    inside,
    load_definition_file,
)
from campaigns.recurring.schedule import next_fire

log = logging.getLogger(__name__)


def _taken_over(stored: str | None, new: str | None) -> bool:
    """Whether the file at ``new`` may take over a definition stored as coming from ``stored``: that file is
    gone, or it is ``new`` itself under its resolved name (as versions before ``file_origin`` stored it)."""
    if stored is None:
        return True
    if new is None:
        return False
    return not os.path.lexists(stored) or os.path.realpath(stored) == os.path.realpath(new)


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
            call_list=definition.call_list,
            enabled=definition.enabled,
            origin=definition.origin,
            origin_path=definition.origin_path,
            allowed_root=definition.allowed_root,
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
    row.call_list = definition.call_list
    row.cron = definition.cron
    row.timezone = definition.timezone
    row.enabled = definition.enabled
    row.allowed_root = definition.allowed_root
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
        origin_path=row.origin_path, allowed_root=row.allowed_root, call_list=row.call_list,
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
        raise NotFound("recurring definition", ref)
    return row


def delete_definition(session: Session, ref: str) -> str:
    """Delete a definition made through the API, with its runs, the files it has read and its reminder keys;
    returns its name. The campaigns its runs created stay, events and exports included (they only lose the
    link to their run): cancel them separately. A definition file's definition is the file's: ``Conflict``
    (the next sync would bring it back)."""
    row = get_definition(session, ref, lock=True)
    if row.origin == "file":
        raise Conflict(f"recurring definition {row.name!r} is defined by the file {row.origin_path}; remove the file")
    runs = select(RecurringRun.id).where(RecurringRun.definition_id == row.id)
    session.execute(update(Campaign).where(Campaign.recurring_run_id.in_(runs)).values(recurring_run_id=None))
    session.execute(delete(RecurringDefinition).where(RecurringDefinition.id == row.id))  # the rest cascades
    session.expunge(row)
    return row.name


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
                if inside(path_, str(directory)) and path_ not in present:
                    row.enabled = False
                    row.next_run_at = None
                    row.spec_hash = ""
                    row.updated_at = now
                    report.disabled.append(row.name)
    for error in report.errors:
        log.error("recurring definition not loaded: %s", error)
    return report


def list_definitions(session: Session, *, offset: int = 0, limit: int | None = None) -> list[RecurringDefinition]:
    """Definitions by name; ``offset``/``limit`` select one page."""
    query = select(RecurringDefinition).order_by(RecurringDefinition.name).offset(offset).limit(limit)
    return list(session.scalars(query))


def count_definitions(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(RecurringDefinition)) or 0


def last_runs(session: Session, definition_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, RecurringRun]:
    """The latest run of each definition that has run, by definition id, in one query.

    "Latest" orders as the run history does: ``started_at``, then the time-ordered id for runs started at the
    same instant. A window function rather than ``DISTINCT ON``, which SQLAlchemy 2.0 and 2.1 spell differently.
    """
    ids = list(definition_ids)
    if not ids:
        return {}
    newest_first = (RecurringRun.started_at.desc(), RecurringRun.id.desc())
    ranked = (
        select(
            RecurringRun.id,
            func.row_number().over(partition_by=RecurringRun.definition_id, order_by=newest_first).label("rank"),
        )
        .where(RecurringRun.definition_id.in_(ids))
        .subquery()
    )
    latest = session.scalars(
        select(RecurringRun).join(ranked, RecurringRun.id == ranked.c.id).where(ranked.c.rank == 1)
    )
    return {run.definition_id: run for run in latest}
