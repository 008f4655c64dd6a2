"""What a campaign's ``pending`` events wait for: held (never due by themselves) and deferred counts, the next
due time and the next retry (``campaigns status``, the campaign view)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns import windows
from campaigns.models import ScheduledEvent
from campaigns.states import EventStatus


@dataclass(frozen=True)
class PendingSchedule:
    """What the campaign's ``pending`` events wait for (``campaigns status``)."""

    held: int
    """Held until someone fixes them (no zone, no opening, a provider hold): never due by themselves."""
    deferred: int
    """Moved out by a claim check (outside the window, pacing, a cap) and due again at a known time."""
    next_due: datetime | None
    """The earliest due time of a pending event that is not held."""
    next_retry: datetime | None
    """The same, among events that have already been tried (a retry)."""


def pending_schedule(session: Session, campaign_id: uuid.UUID) -> PendingSchedule:
    """Held and deferred counts, next due and next retry of the campaign's pending events, in one query."""
    due = ScheduledEvent.scheduled_at_fixed_datetime
    held = due >= windows.HOLD_UNTIL
    tried = (ScheduledEvent.retry_count > 0) | (ScheduledEvent.free_attempts > 0)
    row = session.execute(
        select(
            func.count().filter(held),
            func.count().filter(~held, ScheduledEvent.deferred_reason.is_not(None)),
            func.min(due).filter(~held),
            func.min(due).filter(~held, tried),
        ).where(ScheduledEvent.campaign_id == campaign_id, ScheduledEvent.status == EventStatus.PENDING)
    ).one()
    return PendingSchedule(int(row[0]), int(row[1]), row[2], row[3])


def held_count(session: Session, campaign_id: uuid.UUID) -> int:
    """Pending events that will never be dispatched until someone fixes them (zone unknown, no opening)."""
    return int(
        session.scalar(
            select(func.count()).where(
                ScheduledEvent.campaign_id == campaign_id,
                ScheduledEvent.status == EventStatus.PENDING,
                ScheduledEvent.scheduled_at_fixed_datetime >= windows.HOLD_UNTIL,
            )
        )
        or 0
    )
