"""Results and rejected-rows CSV exports, streamed, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from campaigns.clock import iso
from campaigns.importing.call_list import SPECIAL_COLUMNS
from campaigns.models import CallAttempt, Campaign, ImportIssue, ScheduledEvent
from campaigns.states import EventStatus

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
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
]
BATCH = 2000


def neutralize(value: object) -> str:
    """Text a spreadsheet would execute as a formula gets a leading apostrophe (OWASP CSV injection)."""
    if value is None:
        return ""
    raw = value if isinstance(value, str) else str(value)
    return "'" + raw if raw.startswith(FORMULA_PREFIXES) else raw


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


def _line(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([neutralize(v) for v in values])
    return out.getvalue()


def export_results(session: Session, campaign: Campaign) -> Iterator[str]:
    """One row per event: outcome, attempts, timing, errors and the row's own columns."""
    variable_columns = [c for c in campaign.columns if c not in SPECIAL_COLUMNS]
    yield _line([*RESULT_COLUMNS, *variable_columns])
    last: tuple[int, uuid.UUID] | None = None
    while True:
        query = select(ScheduledEvent).where(ScheduledEvent.campaign_id == campaign.id)
        if last is not None:
            query = query.where(tuple_(ScheduledEvent.source_row, ScheduledEvent.id) > tuple_(last[0], last[1]))
        events = session.scalars(query.order_by(ScheduledEvent.source_row, ScheduledEvent.id).limit(BATCH)).all()
        if not events:
            return
        for event in events:
            attempts: list[CallAttempt] = [a for a in event.attempts if a.attempted_at is not None]
            values: dict[str, str] = {**event.dynamic_variables}
            values.update({f"metadata.{k}": str(v) for k, v in event.conversation_metadata.items()})
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
                    event.deferred_reason or "" if event.status == EventStatus.PENDING else "",
                    iso(event.deferred_until) or "" if event.status == EventStatus.PENDING else "",
                    event.conversation_id or "",
                    insights_summary(attempts),
                    event.source_row or "",
                    event.id,
                    *[values.get(c, "") for c in variable_columns],
                ]
            )
        last = (events[-1].source_row or 0, events[-1].id)
        session.expunge_all()


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
