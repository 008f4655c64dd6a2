"""What an operator watching a campaign asks: attempts by outcome, the events still waiting and why, when the next
one is due, and one event of a campaign. Read-only queries; the console and any dashboard use them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.errors import NotFound
from campaigns.models import CallAttempt, Campaign, ScheduledEvent
from campaigns.states import EventStatus

MAX_WAITING_REASONS = 20
"""Distinct ``deferred_reason`` texts shown for a campaign; the rest are counted together."""


def outcome_counts(session: Session, campaign_id: uuid.UUID) -> dict[str, int]:
    """Finished attempts of the campaign by the engine's ``outcome`` (``answered``, ``busy``, …)."""
    rows = session.execute(
        select(CallAttempt.outcome, func.count())
        .join(ScheduledEvent, ScheduledEvent.id == CallAttempt.event_id)
        .where(ScheduledEvent.campaign_id == campaign_id, CallAttempt.outcome.is_not(None))
        .group_by(CallAttempt.outcome)
        .order_by(CallAttempt.outcome)
    ).all()
    return {str(outcome): int(n) for outcome, n in rows}


@dataclass(frozen=True)
class Waiting:
    """Pending events that share one reason for waiting."""

    reason: str
    """``deferred_reason`` as the claim checks wrote it, or ``due later`` for events not deferred yet."""
    count: int
    until: datetime | None
    """The earliest ``deferred_until`` among them (``None`` when not deferred)."""


NOT_DEFERRED = "scheduled for later"


def waiting(session: Session, campaign_id: uuid.UUID) -> list[Waiting]:
    """The campaign's pending events grouped by why they wait, largest group first."""
    reason = func.coalesce(ScheduledEvent.deferred_reason, NOT_DEFERRED)
    rows = session.execute(
        select(reason, func.count(), func.min(ScheduledEvent.deferred_until))
        .where(ScheduledEvent.campaign_id == campaign_id, ScheduledEvent.status == EventStatus.PENDING)
        .group_by(reason)
        .order_by(func.count().desc(), reason)
    ).all()
    groups = [Waiting(str(r), int(n), until) for r, n, until in rows]
    if len(groups) <= MAX_WAITING_REASONS:
        return groups
    rest = groups[MAX_WAITING_REASONS - 1 :]
    untils = [g.until for g in rest if g.until is not None]
    other = Waiting("other reasons", sum(g.count for g in rest), min(untils) if untils else None)
    return [*groups[: MAX_WAITING_REASONS - 1], other]


IN_FLIGHT = "in flight"
"""The timeline's name for attempts sent that have no outcome yet."""
BUCKET_WIDTHS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 7 * 86400)
"""Bucket widths the timeline picks from (seconds): the smallest that fits the span in ``buckets`` bars."""


@dataclass(frozen=True)
class Timeline:
    """A campaign's attempts over time: ``counts[i]`` is outcome → attempts sent in ``[start + i·width, +width)``."""

    start: datetime | None
    width: timedelta
    counts: list[dict[str, int]]

    def bucket_start(self, index: int) -> datetime:
        assert self.start is not None
        return self.start + index * self.width


def attempt_timeline(session: Session, campaign_id: uuid.UUID, *, buckets: int = 24) -> Timeline:
    """Attempts by the time they were sent (``attempted_at``) and their outcome (:data:`IN_FLIGHT` while
    unknown), in at most ``buckets`` equal bars. Two aggregate queries, whatever the campaign's size."""
    of_campaign = (
        select(CallAttempt.attempted_at, CallAttempt.outcome)
        .join(ScheduledEvent, ScheduledEvent.id == CallAttempt.event_id)
        .where(ScheduledEvent.campaign_id == campaign_id, CallAttempt.attempted_at.is_not(None))
        .subquery()
    )
    first, last = session.execute(
        select(func.min(of_campaign.c.attempted_at), func.max(of_campaign.c.attempted_at))
    ).one()
    if first is None or last is None:
        return Timeline(None, timedelta(seconds=BUCKET_WIDTHS[0]), [])
    span = (last - first).total_seconds()
    width = next((w for w in BUCKET_WIDTHS if span < w * buckets), BUCKET_WIDTHS[-1])
    origin = datetime.fromtimestamp(first.timestamp() // width * width, UTC)
    index = func.floor((func.extract("epoch", of_campaign.c.attempted_at) - origin.timestamp()) / width)
    outcome = func.coalesce(of_campaign.c.outcome, IN_FLIGHT)
    rows = session.execute(select(index, outcome, func.count()).group_by(index, outcome)).all()
    size = int((last.timestamp() - origin.timestamp()) // width) + 1
    counts: list[dict[str, int]] = [{} for _ in range(size)]
    for i, name, n in rows:
        if 0 <= int(i) < len(counts):
            counts[int(i)][str(name)] = int(n)
    return Timeline(origin, timedelta(seconds=width), counts)


def next_due(session: Session, campaign_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """For each campaign with a pending event, the earliest ``scheduled_at`` among them (one query for a page)."""
    ids = list(campaign_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(ScheduledEvent.campaign_id, func.min(ScheduledEvent.scheduled_at_fixed_datetime))
        .where(ScheduledEvent.campaign_id.in_(ids), ScheduledEvent.status == EventStatus.PENDING)
        .group_by(ScheduledEvent.campaign_id)
    ).all()
    return {cid: at for cid, at in rows if cid is not None}


def campaign_event(session: Session, campaign: Campaign, event_id: str) -> ScheduledEvent:
    """One event of ``campaign`` (deleted ones included, as the campaign's exports keep them)."""
    try:
        key = uuid.UUID(event_id)
    except ValueError:
        raise NotFound("event", event_id) from None
    event = session.get(ScheduledEvent, key)
    if event is None or event.campaign_id != campaign.id:
        raise NotFound("event", event_id)
    return event
