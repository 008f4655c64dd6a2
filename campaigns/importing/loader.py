"""Loading a call list into a campaign: stream, validate, COPY, dedupe in the database, report.

The whole load runs in the caller's transaction: an import interrupted at any point (worker killed) leaves
nothing behind, and running it again cannot duplicate anyone (the unique (campaign, recipient) index is the
second guard). Progress is reported through a callback so it can be written on another connection.

Rows are first staged in temp tables; the loader reports rows rejected by the parser, SMS rows without text and
duplicates (within the file and against the campaign's events), then runs the staging hooks (see
:class:`StagingHook`), then turns every staged row without an issue into an event.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Final, Protocol

from sqlalchemy.orm import Session

from campaigns import metrics
from campaigns.ids import uuid7_hex
from campaigns.importing.call_list import CsvLayout, ParsedRow, RowError
from campaigns.importing.reading import open_call_list
from campaigns.importing.reminders import LateRows, apply_late_policy, key_set_sha256, mark_duplicates
from campaigns.mapping import SCHEDULED_AT, SCHEDULED_DATE, ListSettings
from campaigns.models import Campaign
from campaigns.states import Channel, EventStatus, ImportStatus
from campaigns.suppression import mark_suppressed_rows

CHUNK_ROWS = 20_000
MAX_REPORTED_ISSUES = 1000
PREVIEW_ROWS = 5
"""How many rows the report shows as they will be sent."""

Progress = Callable[[int], None]


class StagingHook(Protocol):
    """A check run on a call list once it is staged, before any staged row becomes an event.

    Called with the session of the load and the campaign's id, after the loader's own checks. The staged rows
    are in the temp table ``import_staging`` (id, row_number, phone, scheduled_at, timezone, state, body,
    metadata, variables); a hook reports a row by inserting into ``import_staging_issues`` (row_number, col,
    value, reason, kind) with kind ``rejected``, ``duplicate`` or ``suppressed``: such rows are not imported
    and are counted under their kind. A hook may also change staged rows (recurring campaigns set each row's
    due time). Rows already reported should keep their first issue, so that each row is counted once.
    """

    def __call__(self, session: Session, campaign_id: uuid.UUID, /) -> None: ...


DEFAULT_STAGING_HOOKS: Final[tuple[StagingHook, ...]] = (mark_suppressed_rows,)
"""What every upload runs: numbers on the do-not-contact list are reported as ``suppressed``, not imported."""


@dataclass
class ImportIssueRow:
    row_number: int
    column: str
    value: str
    reason: str
    kind: str


@dataclass
class ImportReport:
    rows_total: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    rows_suppressed: int = 0
    columns: list[str] = field(default_factory=list)
    layout: CsvLayout | None = None
    issues: list[ImportIssueRow] = field(default_factory=list)
    """The first ``MAX_REPORTED_ISSUES`` issues (all of them are in ``import_issues`` after a real import)."""
    preview: list[dict[str, Any]] = field(default_factory=list)
    """The first ``PREVIEW_ROWS`` rows to import, as they will be sent (``row_number``, ``phone``,
    ``scheduled_at``, ``text``, ``conversation_metadata``, ``dynamic_variables``)."""
    late: LateRows = field(default_factory=LateRows)
    """Rows whose time had passed at import, sent now or skipped under ``late_policy``."""
    keys_sha256: str | None = None
    """SHA-256 of the sorted (phone, dedupe key) set of the file's rows (the re-upload guard)."""
    duplicate_upload: dict[str, Any] | None = None
    """A live campaign that already has this file (``campaign_id``, ``name``, ``match``): flagged by a dry run."""

    def as_dict(self) -> dict[str, Any]:
        layout = self.layout
        return {
            "rows_total": self.rows_total,
            "rows_accepted": self.rows_accepted,
            "rows_rejected": self.rows_rejected,
            "rows_duplicate": self.rows_duplicate,
            "rows_suppressed": self.rows_suppressed,
            "rows_late_sent": self.late.sent_count,
            "rows_late_skipped": self.late.skipped_count,
            "late": {"policy": self.late.policy, "sent_rows": self.late.sent, "skipped_rows": self.late.skipped},
            "duplicate_upload": self.duplicate_upload,
            "issues": [issue.__dict__ for issue in self.issues],
            "mapping": [{"column": c, "target": t} for c, t in layout.mapping] if layout else [],
            "variables": list(layout.variables) if layout else [],
            "sent_variables": list(layout.sent_variables) if layout else [],
            "preview": self.preview,
        }


def _copy_text(value: object) -> str:
    """One field in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    raw = value if isinstance(value, str) else str(value)
    return raw.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _chunks(items: Iterator[ParsedRow | RowError]) -> Iterator[tuple[list[ParsedRow], list[RowError]]]:
    rows: list[ParsedRow] = []
    errors: list[RowError] = []
    for item in items:
        if isinstance(item, RowError):
            errors.append(item)
        else:
            rows.append(item)
        if len(rows) + len(errors) >= CHUNK_ROWS:
            yield rows, errors
            rows, errors = [], []
    if rows or errors:
        yield rows, errors


@dataclass
class _Chunk:
    payload: str
    """Rows in COPY text format."""
    errors: list[RowError]
    rows: int


def _encode(rows: list[ParsedRow]) -> str:
    buffer = io.StringIO()
    for row in rows:
        body = row.text  # the text column or the rendered template (campaigns.importing.rows)
        buffer.write(
            "\t".join(
                (
                    uuid7_hex(),
                    str(row.row_number),
                    _copy_text(row.phone),
                    _copy_text(row.scheduled_at.isoformat() if row.scheduled_at else None),
                    _copy_text(row.timezone),
                    _copy_text(row.state),
                    _copy_text(body),
                    _copy_text(json.dumps(row.metadata) if row.metadata else "{}"),
                    _copy_text(json.dumps(row.variables) if row.variables else "{}"),
                    _copy_text(json.dumps(row.source) if row.source else None),
                    _copy_text(row.dedupe),
                    _copy_text(row.send_before.isoformat() if row.send_before else None),
                    _copy_text(row.send_before_error),
                )
            )
        )
        buffer.write("\n")
    return buffer.getvalue()


def _produce(items: Iterator[ParsedRow | RowError]) -> Iterator[_Chunk]:
    """Parse and encode in a background thread while the database ingests the previous chunk.

    Parsing is Python work and COPY is mostly PostgreSQL's: on two cores they overlap. Memory stays bounded
    by the queue (two chunks ahead). An exception in the parser is re-raised here, in the caller's thread.
    """
    results: queue.Queue[_Chunk | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def work() -> None:
        try:
            for rows, errors in _chunks(items):
                if stop.is_set():
                    return
                results.put(_Chunk(_encode(rows), errors, len(rows)))
            results.put(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            results.put(exc)

    thread = threading.Thread(target=work, name="csv-parse", daemon=True)
    thread.start()
    try:
        while True:
            item = results.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                results.get(timeout=0.05)
        thread.join()


def _driver(session: Session) -> Any:
    """The psycopg connection under the session's transaction (for COPY)."""
    return session.connection().connection.driver_connection


STAGING = """
CREATE TEMP TABLE import_staging (
    id uuid, row_number integer, phone text, scheduled_at timestamptz, timezone text, state text, body text,
    metadata jsonb, variables jsonb, source jsonb, dedupe text, send_before timestamptz, send_before_error text
) ON COMMIT DROP;
CREATE TEMP TABLE import_staging_issues (
    row_number integer, col text, value text, reason text, kind text
) ON COMMIT DROP;
"""


def load_call_list(
    session: Session,
    campaign: Campaign,
    data: IO[bytes],
    *,
    now: datetime,
    dry_run: bool = False,
    progress: Progress | None = None,
    hooks: Sequence[StagingHook] = DEFAULT_STAGING_HOOKS,
) -> ImportReport:
    """Import ``data`` into ``campaign`` inside the caller's transaction (``dry_run``: stage and count only).

    ``hooks`` run on the staged rows in order (see :class:`StagingHook`); by default numbers on the
    do-not-contact list are skipped and reported as ``suppressed``.

    Raises ``CsvFileError`` for file-level problems; the caller rolls back, so nothing is created.
    """
    layout, items = open_call_list(data, **read_options(campaign))
    return load_rows(session, campaign, layout, items, now=now, dry_run=dry_run, progress=progress, hooks=hooks)


def read_options(campaign: Campaign) -> dict[str, Any]:
    """How :func:`open_call_list` reads this campaign's file: region, mapping, SMS template, default zone."""
    return {
        "default_region": campaign.default_region or "US",
        "settings": ListSettings.from_json(campaign.call_list),
        "template": campaign.text if campaign.telnyx_conversation_channel == Channel.SMS_CHAT else None,
        "default_zone": campaign.timezone,
        "built_ins": {
            "telnyx_agent_target": campaign.telnyx_agent_target,
            "telnyx_conversation_channel": str(campaign.telnyx_conversation_channel),
        },
    }


def load_rows(
    session: Session,
    campaign: Campaign,
    layout: CsvLayout,
    items: Iterator[ParsedRow | RowError],
    *,
    now: datetime,
    dry_run: bool = False,
    progress: Progress | None = None,
    hooks: Sequence[StagingHook] = DEFAULT_STAGING_HOOKS,
) -> ImportReport:
    """:func:`load_call_list` for a file already opened with :func:`open_call_list` (its layout and rows)."""
    report = ImportReport(layout=layout)
    # What the export shows of each event: the variables it sends, its metadata (the row as written is h-export's).
    metadata = [t for _, t in layout.mapping if t.startswith("metadata.")]
    report.columns = [*layout.sent_variables, *metadata]
    unsent = [v for v in layout.variables if v not in layout.sent_variables]
    conn = _driver(session)
    list_settings = ListSettings.from_json(campaign.call_list)
    rejected_rows: set[int] = set()
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS import_staging; DROP TABLE IF EXISTS import_staging_issues")
        cur.execute(STAGING)
        seen = 0
        for chunk in _produce(items):
            errors = chunk.errors
            if chunk.payload:
                with cur.copy("COPY import_staging FROM STDIN") as copy:
                    copy.write(chunk.payload)
            if errors:
                with cur.copy("COPY import_staging_issues FROM STDIN") as copy:
                    for error in errors:
                        rejected_rows.add(error.row_number)
                        copy.write_row((error.row_number, error.column, error.value, error.reason, "rejected"))
            seen += chunk.rows + len({e.row_number for e in errors})
            if progress is not None:
                progress(seen)
        staged = cur.execute("SELECT count(*) FROM import_staging").fetchone()[0]
        if campaign.telnyx_conversation_channel == Channel.SMS_CHAT:
            cur.execute(
                """INSERT INTO import_staging_issues
                   SELECT row_number, 'text', '', 'no text: give a text column or a campaign text template', 'rejected'
                   FROM import_staging WHERE body IS NULL OR btrim(body) = ''"""
            )
            cur.execute("DELETE FROM import_staging WHERE body IS NULL OR btrim(body) = ''")
        report.keys_sha256 = key_set_sha256(cur)
        mark_duplicates(cur, campaign.id, keyed=list_settings.dedupe_key is not None)
        for hook in hooks:
            hook(session, campaign.id)
        report.late = apply_late_policy(
            cur, list_settings, now=now, column=_scheduled_column(layout), limit=MAX_REPORTED_ISSUES
        )
        cur.execute(
            """DELETE FROM import_staging s USING import_staging_issues i
               WHERE i.row_number = s.row_number AND i.kind IN ('duplicate', 'suppressed', 'rejected')"""
        )
        counts = dict(
            cur.execute("SELECT kind, count(DISTINCT row_number) FROM import_staging_issues GROUP BY kind").fetchall()
        )
        if not dry_run:
            cur.execute(
                """INSERT INTO scheduled_events (
                       id, assistant_id, telnyx_conversation_channel, telnyx_end_user_target, telnyx_agent_target,
                       scheduled_at_fixed_datetime, status, conversation_metadata, dynamic_variables, text,
                       created_at, updated_at, errors, max_retries_client_errors, retry_interval_secs, retry_count,
                       cancel_requested, campaign_id, source_row, state, ruleset, timezone, connection_id,
                       answering_machine_detection, voicemail_action, retry_policy, source_values, dedupe_key)
                   SELECT id, %(assistant)s, %(channel)s, phone, %(agent)s,
                          coalesce(scheduled_at, %(start)s), %(pending)s, metadata,
                          variables - %(unsent)s::text[], body,
                          %(now)s, %(now)s, '[]'::jsonb, %(retries)s, %(interval)s, 0,
                          false, %(campaign)s, row_number, state, %(ruleset)s, timezone, %(connection)s,
                          %(amd)s, %(voicemail)s, %(policy)s::jsonb, source, coalesce(dedupe, '')
                   FROM import_staging
                   ON CONFLICT (campaign_id, telnyx_end_user_target, dedupe_key) WHERE campaign_id IS NOT NULL
                   DO NOTHING""",
                {
                    "assistant": campaign.assistant_id,
                    "channel": campaign.telnyx_conversation_channel,
                    "agent": campaign.telnyx_agent_target,
                    "start": campaign.start_at,
                    "pending": EventStatus.PENDING.value,
                    "now": now,
                    "retries": campaign.max_retries_client_errors,
                    "interval": campaign.retry_interval_secs,
                    "campaign": campaign.id,
                    "ruleset": campaign.ruleset,
                    "connection": campaign.connection_id,
                    # The campaign's outcome settings, copied onto each event (SMS events ignore them).
                    "amd": campaign.answering_machine_detection,
                    "voicemail": campaign.voicemail_action,
                    "policy": json.dumps(campaign.retry_policy) if campaign.retry_policy else None,
                    # Variables outside the allow-list stay in the upload, never in what the provider gets.
                    "unsent": unsent,
                },
            )
            report.rows_accepted = cur.rowcount
            cur.execute(
                """INSERT INTO import_issues (campaign_id, row_number, "column", value, reason, kind)
                   SELECT %s, row_number, col, coalesce(value, ''), reason, kind FROM import_staging_issues
                   ORDER BY row_number""",
                (campaign.id,),
            )
            cur.execute("SELECT pg_notify('campaigns_due', '')")
        else:
            report.rows_accepted = cur.execute("SELECT count(*) FROM import_staging").fetchone()[0]
        report.preview = [
            {
                "row_number": row_number,
                "phone": phone,
                "scheduled_at": (when or campaign.start_at).isoformat(),
                "text": body,
                "conversation_metadata": meta or {},
                "dynamic_variables": sent or {},
            }
            for row_number, phone, when, body, meta, sent in cur.execute(
                "SELECT row_number, phone, scheduled_at, body, metadata, variables - %s::text[] FROM import_staging "
                "ORDER BY row_number LIMIT %s",
                (unsent, PREVIEW_ROWS),
            ).fetchall()
        ]
        report.issues = [
            ImportIssueRow(*row)
            for row in cur.execute(
                "SELECT row_number, col, coalesce(value, ''), reason, kind FROM import_staging_issues "
                "ORDER BY row_number LIMIT %s",
                (MAX_REPORTED_ISSUES,),
            ).fetchall()
        ]
        cur.execute("DROP TABLE import_staging; DROP TABLE import_staging_issues")
    report.rows_rejected = int(counts.get("rejected", 0))
    report.rows_duplicate = int(counts.get("duplicate", 0))
    report.rows_suppressed = int(counts.get("suppressed", 0))
    report.rows_total = int(staged) + len(rejected_rows)
    return report


def _scheduled_column(layout: CsvLayout) -> str:
    """The header a late row's issue names: the scheduled_at column, or the date column, as written."""
    for column, target in layout.mapping:
        if target in (SCHEDULED_AT, SCHEDULED_DATE):
            return column
    return SCHEDULED_AT


def apply_report(campaign: Campaign, report: ImportReport, *, now: datetime) -> None:
    """Record a finished import on its campaign (counts, columns, status) and in the metrics."""
    metrics.count_import(report.rows_accepted, report.rows_rejected, report.rows_duplicate, report.rows_suppressed)
    metrics.EVENTS_CREATED.labels(campaign.telnyx_conversation_channel, "import").inc(report.rows_accepted)
    campaign.import_status = ImportStatus.COMPLETED
    campaign.import_error = None
    campaign.columns = report.columns
    campaign.rows_total = report.rows_total
    campaign.rows_accepted = report.rows_accepted
    campaign.rows_rejected = report.rows_rejected
    campaign.rows_duplicate = report.rows_duplicate
    campaign.rows_suppressed = report.rows_suppressed
    campaign.rows_late_sent = report.late.sent_count
    campaign.rows_late_skipped = report.late.skipped_count
    campaign.upload_keys_sha256 = report.keys_sha256
    campaign.updated_at = now
