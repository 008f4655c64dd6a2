"""Runs: exactly once per tick (the due definition's row lock, then the unique ``(definition, tick)`` run row), one
catch-up run after downtime, each new source file read into one campaign."""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
import tempfile
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from campaigns import campaign as campaign_service
from campaigns import importing as importer
from campaigns.campaign import CampaignSettings
from campaigns.db import unit_of_work
from campaigns.errors import ValidationFailed
from campaigns.ids import uuid7
from campaigns.importing import CsvFileError, CsvLayout, HooksForLayout, StagingHook
from campaigns.mapping import ListSettings
from campaigns.models import RecurringDefinition, RecurringFile, RecurringRun
from campaigns.recurring.definitions import TEMPLATE_FORBIDDEN, inside
from campaigns.recurring.due import parse_due
from campaigns.recurring.schedule import latest_fire, next_fire
from campaigns.recurring.staging import RunStaging, resolve_columns
from campaigns.recurring.store import get_definition, sync_directory
from campaigns.settings import get_settings
from campaigns.suppression import mark_suppressed_rows

log = logging.getLogger(__name__)

Now = Callable[[], datetime]
SPOOL_BYTES = 8 * 1024 * 1024


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


def content_free(exc: Exception, known: Iterable[str] = ()) -> str:
    """Why a file was not imported, without anything the file holds: the error's first sentence up to a colon
    or parenthesis (where the reader lists what it found), quoted names replaced by ``…`` unless the definition
    itself names them (``known``: its due and dedupe columns). A header echoed back once showed the first line
    of /etc/passwd in a run message (issue #19)."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    text = re.split(r"[:(]", text, maxsplit=1)[0]
    names = set(known)

    def quoted(match: re.Match[str]) -> str:
        name = match.group(1) if match.group(1) is not None else match.group(2)
        return f"\x00{name}\x01" if name in names else "…"

    text = re.sub(r"'([^']*)'|\"([^\"]*)\"", quoted, text)
    text = re.sub(r"['\"].*", "…", text)  # an unclosed quote: cut there
    return text.replace("\x00", "'").replace("\x01", "'").strip() or type(exc).__name__


def named_columns(definition: RecurringDefinition) -> list[str]:
    """The column names the definition itself writes (due, dedupe_key, mapping, variables, drop_columns): a run
    message may repeat them, as they are not the file's content."""
    rule = parse_due(definition.due)
    settings = ListSettings.from_json({**definition.campaign, **(definition.call_list or {})})
    return [
        *definition.dedupe_key, *(c for c in (rule.column, rule.time_column) if c), *settings.mapping,
        *(t for t in settings.mapping.values() if t), *(settings.variables or ()), *settings.drop_columns,
    ]  # fmt: skip


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


def _hooks_for_file(
    definition: RecurringDefinition,
    run_id: uuid.UUID,
    settings: CampaignSettings,
    *,
    now: datetime,
    zone: str,
    mark_suppressed: StagingHook | None,
    staged: list[RunStaging],
) -> HooksForLayout:
    """The staging hooks of one file, built once its header is known (the due and dedupe columns are named in it).

    The run's own hook is appended to ``staged`` so the caller can read what it counted.
    """

    def hooks(layout: CsvLayout) -> Sequence[StagingHook]:
        rule = parse_due(definition.due)
        due_refs = resolve_columns(layout, [c for c in (rule.column, rule.time_column) if c], "due")
        key_refs = resolve_columns(layout, definition.dedupe_key, "dedupe_key")
        hook = RunStaging(definition, run_id, now=now, due_refs=due_refs, key_refs=key_refs, default_zone=zone,
                          start_at=settings.start_at, date_order=settings.call_list.date_order)  # fmt: skip
        staged.append(hook)
        return (hook,) if mark_suppressed is None else (mark_suppressed, hook)

    return hooks


def _run_files(
    session: Session,
    definition: RecurringDefinition,
    run: RecurringRun,
    *,
    now: datetime,
    force: bool,
    allowed_root: str | None,
    mark_suppressed: StagingHook | None,
) -> list[uuid.UUID]:
    """Read the new source files into one campaign each; fill in ``run``. Returns the campaigns created.

    Every file read lies in the definition's stored ``allowed_root`` (symlinks resolved); an API definition
    stored without one falls back to the worker's ``allowed_root`` and reads nothing without either. A file
    already read at the same path, size and modification time is skipped without being read again (``force``
    reads it). Messages name files and counts, never what a file holds.
    """
    root = definition.allowed_root or (allowed_root if definition.origin == "api" else None)
    if definition.origin == "api" and root is None:
        run.status = "failed"
        run.message = "not run: this API definition has no allowed root (CAMPAIGNS_RECURRING_DIR); re-create it"
        return []
    files = matching_files(definition.source)
    if root is not None:
        files = [f for f in files if inside(str(f), root)]
    if not files:
        run.status = "no_new_file"
        run.message = f"no new file: nothing matches {definition.source}"
        return []
    read_before = session.execute(
        select(RecurringFile.sha256, RecurringFile.path, RecurringFile.size, RecurringFile.mtime_ns).where(
            RecurringFile.definition_id == definition.id
        )
    ).all()
    seen = {row.sha256 for row in read_before}
    unchanged = {(row.path, row.size, row.mtime_ns) for row in read_before if row.mtime_ns is not None}
    campaigns: list[uuid.UUID] = []
    totals = _Counts()
    notes: list[str] = []
    failures = 0
    taken: set[str] = set()
    # The definition's own mapping, variables, drop_columns and date_order apply to every campaign it creates.
    template = {k: v for k, v in definition.campaign.items() if k not in TEMPLATE_FORBIDDEN} | (
        definition.call_list or {}
    )
    zone = template.get("timezone") or definition.timezone
    label = (run.tick_at or now).astimezone(zoneinfo.ZoneInfo(definition.timezone))
    for path in files:
        try:
            stat = path.stat()
            if not force and (str(path), stat.st_size, stat.st_mtime_ns) in unchanged:
                continue  # read before, as it is now: not read and hashed again
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
                    name = f"{definition.name} {label:%Y-%m-%d %H:%M %Z}"
                    if len(files) > 1:
                        name += f" {path.name}"
                    settings = campaign_service.validate_settings({**template, "name": name[:255]}, now=now)
                    staged: list[RunStaging] = []
                    hooks = _hooks_for_file(definition, run.id, settings, now=now, zone=zone,
                                            mark_suppressed=mark_suppressed, staged=staged)  # fmt: skip
                    result = importer.import_new_campaign(
                        # A run's files are guarded by their hash and its reminders by their dedupe keys.
                        session,
                        settings,
                        spool,
                        now=now,
                        hooks=hooks,
                        guard_uploads=False,
                    )
                    campaign, report, hook = result.campaign, result.report, staged[0]
                    assert campaign is not None and report is not None  # an inline import
                    campaign.recurring_run_id = run.id
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
                entry["error"] = content_free(exc, named_columns(definition))
                notes.append(f"{path.name}: not imported: {entry['error']}")
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
                    mtime_ns=stat.st_mtime_ns,
                    run_id=run.id,
                    campaign_id=campaign_id,
                    seen_at=now,
                )
                .on_conflict_do_update(
                    index_elements=["definition_id", "sha256"],
                    set_={
                        "path": str(path),
                        "mtime_ns": stat.st_mtime_ns,
                        "run_id": run.id,
                        "campaign_id": campaign_id,
                        "seen_at": now,
                    },
                )
            )
    for name, value in totals.as_dict().items():
        setattr(run, name, value)
    if not run.files and not failures:
        # Skipped as read before (by content, or unchanged at its path): their rows say when they were read.
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
    mark_suppressed: StagingHook | None,
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
        run.message = f"failed: {type(exc).__name__} (the worker's log has the details)"
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


def _too_soon(definition: RecurringDefinition, at: datetime) -> bool:
    """Whether the definition ran less than ``CAMPAIGNS_RECURRING_MIN_INTERVAL_SECS`` ago (a schedule stored
    before the minimum existed, or a wall-time quirk such as a spring-forward gap, must not run it sooner)."""
    least = timedelta(seconds=get_settings().recurring_min_interval_secs)
    return definition.last_run_at is not None and at - definition.last_run_at < least


def run_due(
    factory: sessionmaker[Session],
    *,
    now: Now,
    allowed_root: str | None = None,
    mark_suppressed: StagingHook | None = mark_suppressed_rows,
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
            skipped.add(definition.id)
            if _too_soon(definition, at):
                log.warning("recurring run skipped: the last run was less than the minimum interval ago",
                            extra={"definition": definition.name})  # fmt: skip
                definition.next_run_at = next_fire(definition.cron, definition.timezone, at)
                continue
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
    mark_suppressed: StagingHook | None = mark_suppressed_rows,
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
    mark_suppressed: StagingHook | None = mark_suppressed_rows,
) -> list[RunResult]:
    """What beat does: sync the definition files, then run whatever is due."""
    if directory:
        sync_directory(factory, Path(directory), now=now())
    return run_due(factory, now=now, allowed_root=directory, mark_suppressed=mark_suppressed)
