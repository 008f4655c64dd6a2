"""The wire shape of definitions and runs (the ``/v1/recurring`` API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.clock import iso
from campaigns.models import Campaign, RecurringDefinition, RecurringRun
from campaigns.recurring.schedule import upcoming


def serialize_run(session: Session, run: RecurringRun) -> dict[str, Any]:
    campaign_ids = session.scalars(
        select(Campaign.id).where(Campaign.recurring_run_id == run.id).order_by(Campaign.created_at, Campaign.id)
    ).all()
    return {
        "id": str(run.id),
        "kind": run.kind,
        "tick_at": iso(run.tick_at),
        "missed_ticks": run.missed_ticks,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
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
        "next_run_at": iso(row.next_run_at),
        "last_run_at": iso(row.last_run_at),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }
    body.update(row.call_list or {})  # mapping, variables, drop_columns, date_order: only those set
    if now is not None and row.enabled:
        body["next_runs"] = [iso(t) for t in upcoming(row.cron, row.timezone, now)]
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
