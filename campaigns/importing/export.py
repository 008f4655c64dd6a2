"""Results, per-attempt and rejected-rows CSV exports, streamed, safe to open in a spreadsheet.

``export_results`` writes one row per event: the E.164 number and the number as written in the upload, the
outcome, the attempts' real dispatch times, answer and end time, and the uploaded row as written (``row.<header>``
columns, from ``scheduled_events.source_values``); ``export_attempts`` writes one row per attempt.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator, Sequence

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from campaigns.clock import iso
from campaigns.importing.call_list import SPECIAL_COLUMNS
from campaigns.models import CallAttempt, Campaign, ImportIssue, ScheduledEvent
from campaigns.phones import E164, normalize_phone
from campaigns.states import EventStatus
from campaigns.windows import HOLD_UNTIL

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
"""``-12``, ``+3.5``: a spreadsheet reads it as the number it is, so the formula guard leaves it alone."""
RESULT_COLUMNS = [
    "phone",
    "status",
    "attempts",
    "last_call_status",
    "outcome",
    "answered_by",
    "attempt_outcomes",
    "call_duration",
    "first_attempt_at",
    "last_attempt_at",
    "errors",
    "deferred_reason",
    "deferred_until",
    "conversation_id",
    "insights",
    "source_row",
    "event_id",
    "phone_as_written",
    "answered_at",
    "ended_at",
    "hold_reason",
]
"""The fixed columns of ``export.csv``; then the row's variables and ``metadata.<key>`` columns, then the row as
written (``row.<header>``)."""
ROW_PREFIX = "row."
ATTEMPT_COLUMNS = [
    "event_id",
    "source_row",
    "phone",
    "phone_as_written",
    "attempt_number",
    "state",
    "dispatched_at",
    "answered_at",
    "ended_at",
    "call_status",
    "outcome",
    "answered_by",
    "call_duration",
    "provider_id",
    "conversation_id",
    "error",
]
BATCH = 2000
HELD_WITHOUT_REASON = "held: no calling-window opening could be found"


def neutralize(value: object) -> str:
    """Text a spreadsheet would execute as a formula gets a leading apostrophe (OWASP CSV injection).

    An E.164 number (``+12125550101``) or a plain number (``-5``, ``+3.5``) is left as it is: it cannot run
    anything, and an apostrophe in front of it breaks every join a CRM import makes on it.
    """
    if value is None:
        return ""
    raw = value if isinstance(value, str) else str(value)
    if not raw.startswith(FORMULA_PREFIXES) or E164.match(raw) or PLAIN_NUMBER.match(raw):
        return raw
    return "'" + raw


INSIGHT_SUMMARY_CHARS = 500


def insights_summary(attempts: list[CallAttempt]) -> str:
    """The last conversation's insight results (``call.conversation_insights.generated``) as one cell:
    ``result; result`` (a structured result as ``key=value`` pairs), cut at 500 characters."""
    for attempt in reversed(attempts):
        results = (attempt.insights or {}).get("results")
        if not results:
            continue
        parts = []
        for item in results:
            result = item.get("result") if isinstance(item, dict) else None
            if isinstance(result, dict):
                parts.append(", ".join(f"{k}={v}" for k, v in result.items()))
            elif result is not None:
                parts.append(str(result))
        summary = "; ".join(p for p in parts if p)
        return summary[:INSIGHT_SUMMARY_CHARS]
    return ""


def _line(values: Sequence[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([neutralize(v) for v in values])
    return out.getvalue()


def _events(session: Session, campaign: Campaign) -> Iterator[ScheduledEvent]:
    """The campaign's events in file order, read in batches (each batch's attempts with it)."""
    last: tuple[int, uuid.UUID] | None = None
    while True:
        query = select(ScheduledEvent).where(ScheduledEvent.campaign_id == campaign.id)
        if last is not None:
            query = query.where(tuple_(ScheduledEvent.source_row, ScheduledEvent.id) > tuple_(last[0], last[1]))
        events = session.scalars(query.order_by(ScheduledEvent.source_row, ScheduledEvent.id).limit(BATCH)).all()
        if not events:
            return
        yield from events
        last = (events[-1].source_row or 0, events[-1].id)
        session.expunge_all()


def source_headers(session: Session, campaign: Campaign) -> list[str]:
    """Every header of the campaign's uploaded rows as written, in the file's order as far as it is known.

    JSONB keeps no key order: the headers the campaign lists (``campaign.columns``, in file order) come in that
    order, after any it does not list (the phone column), which are sorted.
    """
    keys = set(
        session.scalars(
            select(func.jsonb_object_keys(ScheduledEvent.source_values))
            .where(
                ScheduledEvent.campaign_id == campaign.id, func.jsonb_typeof(ScheduledEvent.source_values) == "object"
            )
            .distinct()
        )
    )
    listed = [c for c in campaign.columns if c in keys]
    return [*sorted(keys - set(listed)), *listed]


class _PhoneColumn:
    """Which uploaded column held the phone: the first whose value normalizes to the event's number (learnt once
    per campaign, checked on each row, looked for again where a row disagrees)."""

    def __init__(self, campaign: Campaign, headers: list[str]) -> None:
        self.region = campaign.default_region
        self.headers = headers
        self.found: str | None = None

    def as_written(self, event: ScheduledEvent) -> str:
        row = event.source_values
        if not row:
            return ""
        if self.found is not None and self._is_phone(row.get(self.found), event):
            return row[self.found]
        for header in self.headers:
            if self._is_phone(row.get(header), event):
                self.found = header
                return row[header]
        return ""

    def _is_phone(self, value: str | None, event: ScheduledEvent) -> bool:
        if not value:
            return False
        return normalize_phone(value, default_region=self.region)[0] == event.telnyx_end_user_target


def _held(event: ScheduledEvent) -> bool:
    """Pending with no due time anyone will reach: the event waits for someone to fix it (a hold)."""
    if event.status != EventStatus.PENDING:
        return False
    return event.scheduled_at_fixed_datetime >= HOLD_UNTIL or (
        event.deferred_until is not None and event.deferred_until >= HOLD_UNTIL
    )


def export_results(session: Session, campaign: Campaign) -> Iterator[str]:
    """One row per event: outcome, attempts, timing, errors, the row's variables and the row as written."""
    variable_columns = [c for c in campaign.columns if c not in SPECIAL_COLUMNS]
    headers = source_headers(session, campaign)
    phone_column = _PhoneColumn(campaign, headers)
    yield _line([*RESULT_COLUMNS, *variable_columns, *(ROW_PREFIX + h for h in headers)])
    for event in _events(session, campaign):
        attempts: list[CallAttempt] = [a for a in event.attempts if a.attempted_at is not None]
        values: dict[str, str] = {**event.dynamic_variables}
        values.update({f"metadata.{k}": str(v) for k, v in event.conversation_metadata.items()})
        answered = [a.answered_at for a in attempts if a.answered_at is not None]
        pending, held = event.status == EventStatus.PENDING, _held(event)
        row = event.source_values or {}
        yield _line(
            [
                event.telnyx_end_user_target,
                event.status,
                len(attempts),
                attempts[-1].call_status or attempts[-1].last_status if attempts else "",
                attempts[-1].outcome or "" if attempts else "",
                attempts[-1].answered_by or "" if attempts else "",
                ";".join(a.outcome or "" for a in attempts),
                event.call_duration if event.call_duration is not None else "",
                iso(attempts[0].attempted_at) or "" if attempts else "",
                iso(attempts[-1].attempted_at) or "" if attempts else "",
                "; ".join(event.errors),
                event.deferred_reason or "" if pending else "",
                iso(event.deferred_until) or "" if pending and not held else "",
                event.conversation_id or "",
                insights_summary(attempts),
                event.source_row or "",
                event.id,
                phone_column.as_written(event),
                iso(answered[-1]) or "" if answered else "",
                iso(attempts[-1].finished_at) or "" if attempts else "",
                (event.deferred_reason or HELD_WITHOUT_REASON) if held else "",
                *[values.get(c, "") for c in variable_columns],
                *[row.get(h, "") for h in headers],
            ]
        )


def export_attempts(session: Session, campaign: Campaign) -> Iterator[str]:
    """One row per attempt, in file order then attempt order: a no-answer before the answered call is its own
    row, with its dispatch, answer and end times."""
    phone_column = _PhoneColumn(campaign, source_headers(session, campaign))
    yield _line(ATTEMPT_COLUMNS)
    for event in _events(session, campaign):
        as_written = phone_column.as_written(event)
        for a in event.attempts:
            yield _line(
                [
                    event.id,
                    event.source_row or "",
                    event.telnyx_end_user_target,
                    as_written,
                    a.attempt_number,
                    a.state,
                    iso(a.attempted_at) or "",
                    iso(a.answered_at) or "",
                    iso(a.finished_at) or "",
                    a.call_status or "",
                    a.outcome or "",
                    a.answered_by or "",
                    a.call_duration if a.call_duration is not None else "",
                    a.provider_id or "",
                    a.conversation_id or "",
                    a.error or "",
                ]
            )


def export_issues(session: Session, campaign_id: uuid.UUID) -> Iterator[str]:
    """Every row that was not imported, with row number, column and reason."""
    yield _line(["row_number", "column", "value", "reason", "kind"])
    last_id = 0
    while True:
        issues = session.scalars(
            select(ImportIssue)
            .where(ImportIssue.campaign_id == campaign_id, ImportIssue.id > last_id)
            .order_by(ImportIssue.id)
            .limit(BATCH)
        ).all()
        if not issues:
            return
        for issue in issues:
            yield _line([issue.row_number, issue.column, issue.value, issue.reason, issue.kind])
        last_id = issues[-1].id
