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
  (``importing.load_call_list``) with a hook that sets each row's due time, reports rows whose time is already
  past, and claims each row's dedupe key in ``recurring_reminders`` (primary key per definition): a reminder
  already scheduled by any earlier run is reported as a duplicate, never scheduled twice.

Due expressions: ``now``; ``COLUMN`` (a date-time column); ``COLUMN - 24h`` / ``COLUMN + 1d12h``;
``COLUMN 09:00 local`` (that day at 09:00 in the row's zone) or ``COLUMN - 1d 18:30 America/Chicago``.
"local" is the row's ``timezone`` column, else the template's ``timezone``, else the definition's zone; the
same zone reads date-times written without an offset. The campaign's calling window still applies at dispatch.

The package, one module per room: ``due`` (due expressions), ``schedule`` (cron arithmetic), ``definitions``
(fields, validation, TOML files), ``store`` (definitions and their last runs in the database, the directory sync),
``staging`` (the importer hook of a run), ``runs`` (executing runs: due, now, beat's tick), ``serialize`` (the wire
shape). Its public names are re-exported here; callers use ``campaigns.recurring.<name>``.
"""

from campaigns.importing.dates import parse_duration
from campaigns.recurring.definitions import (
    Definition,
    DefinitionFileError,
    load_definition_file,
    validate_definition,
)
from campaigns.recurring.due import DueRule, due_time, local_instant, parse_due, parse_when
from campaigns.recurring.runs import RunResult, matching_files, run_due, run_now, tick
from campaigns.recurring.schedule import check_cron, latest_fire, next_fire, upcoming
from campaigns.recurring.serialize import serialize_definition, serialize_run
from campaigns.recurring.store import (
    SyncReport,
    count_definitions,
    delete_definition,
    get_definition,
    last_runs,
    list_definitions,
    sync_directory,
    upsert_definition,
)

__all__ = [
    "Definition",
    "DefinitionFileError",
    "DueRule",
    "RunResult",
    "SyncReport",
    "check_cron",
    "count_definitions",
    "delete_definition",
    "due_time",
    "get_definition",
    "last_runs",
    "latest_fire",
    "list_definitions",
    "load_definition_file",
    "local_instant",
    "matching_files",
    "next_fire",
    "parse_due",
    "parse_duration",
    "parse_when",
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
