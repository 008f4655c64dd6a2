"""Row locks for the state machine, always taken in the same order so concurrent paths cannot deadlock.

One rule: events before attempts, and within a batch, events in id order with one statement. The dispatch
batches, the webhook batches and the reconciler all lock through here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, lazyload

from campaigns import logs
from campaigns.models import CallAttempt, ScheduledEvent

WITHOUT_ATTEMPTS = lazyload(ScheduledEvent.attempts)
"""The state machine never reads ``event.attempts``: skip the eager (selectin) load of the whole history."""


def lock_attempt(session: Session, attempt_id: uuid.UUID) -> tuple[CallAttempt, ScheduledEvent] | None:
    """Lock the event, then the attempt (always in this order, so concurrent handlers cannot deadlock)."""
    event_id = session.scalar(select(CallAttempt.event_id).where(CallAttempt.id == attempt_id))
    if event_id is None:
        return None
    event = session.scalars(
        select(ScheduledEvent)
        .where(ScheduledEvent.id == event_id)
        .options(WITHOUT_ATTEMPTS)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    attempt = session.scalars(
        select(CallAttempt).where(CallAttempt.id == attempt_id).execution_options(populate_existing=True)
    ).one_or_none()
    if attempt is None:
        return None
    logs.add_context(event_id=event.id, campaign_id=event.campaign_id)
    return attempt, event


def _lock_batch(
    session: Session, events: ColumnElement[bool], attempt_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[CallAttempt, ScheduledEvent]]:
    """Lock the events matching ``events`` in id order with one statement (every batch path locks them so, so
    batches cannot deadlock), then read the attempts with a second; an attempt whose event is not among them
    (withdrawn meanwhile, unknown) is left out."""
    locked = {
        event.id: event
        for event in session.scalars(
            select(ScheduledEvent)
            .where(events)
            .options(WITHOUT_ATTEMPTS)
            .order_by(ScheduledEvent.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    if not locked:
        return {}
    attempts = session.scalars(
        select(CallAttempt).where(CallAttempt.id.in_(attempt_ids)).execution_options(populate_existing=True)
    )
    return {attempt.id: (attempt, locked[attempt.event_id]) for attempt in attempts if attempt.event_id in locked}


def lock_attempts_by_id(session: Session, attempt_ids: Sequence[uuid.UUID]) -> list[tuple[CallAttempt, ScheduledEvent]]:
    """Lock the events of several attempts in id order, then read the attempts; pairs come back in the order of
    ``attempt_ids``, unknown ids left out."""
    if not attempt_ids:
        return []
    events = ScheduledEvent.id.in_(select(CallAttempt.event_id).where(CallAttempt.id.in_(attempt_ids)))
    pairs = _lock_batch(session, events, attempt_ids)
    return [pairs[a] for a in attempt_ids if a in pairs]


def lock_attempts(
    session: Session, event_of: Mapping[uuid.UUID, uuid.UUID]
) -> dict[uuid.UUID, tuple[CallAttempt, ScheduledEvent]]:
    """``lock_attempt`` for a batch whose attempts' events are already known (``event_of``: attempt → event).

    Locked as ``lock_attempts_by_id`` locks a dispatch batch; an attempt withdrawn meanwhile is left out. Pass the
    pairs to the ``*_locked`` functions of ``outcomes`` and flush once for the batch.
    """
    if not event_of:
        return {}
    return _lock_batch(session, ScheduledEvent.id.in_(sorted(set(event_of.values()))), list(event_of))
