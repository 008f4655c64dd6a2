"""``campaigns.progress``: outcomes, waiting reasons, next due time and one event of a campaign, on PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from campaigns import campaign as campaign_service
from campaigns import progress
from campaigns.clock import FrozenClock
from campaigns.errors import NotFound
from campaigns.models import CallAttempt, Campaign, ScheduledEvent
from campaigns.states import AttemptState, EventStatus
from tests.factories import make_event


def _campaign(session: Session, clock: FrozenClock, name: str = "c") -> Campaign:
    settings = campaign_service.validate_settings(
        {"name": name, "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"},
        now=clock.now(),
    )
    return campaign_service.create_campaign(session, settings, now=clock.now())


_numbers = iter(range(1000, 10_000))


def _event(session: Session, clock: FrozenClock, campaign: Campaign, minutes: int, **fields: object) -> ScheduledEvent:
    at = (clock.now() + timedelta(minutes=minutes)).isoformat()
    event = make_event(
        session, clock.now(), scheduled_at_fixed_datetime=at, telnyx_end_user_target=f"+1555123{next(_numbers)}"
    )
    event.campaign_id = campaign.id
    for name, value in fields.items():
        setattr(event, name, value)
    session.flush()
    return event


def _attempt(session: Session, event: ScheduledEvent, number: int, outcome: str | None) -> None:
    session.add(
        CallAttempt(
            event_id=event.id,
            attempt_number=number,
            state=AttemptState.FINISHED if outcome else AttemptState.CLAIMED,
            provider="texml",
            claimed_at=event.created_at,
            outcome=outcome,
        )
    )
    session.flush()


def test_outcomes_waiting_and_next_due(session: Session, clock: FrozenClock) -> None:
    mine, other = _campaign(session, clock, "mine"), _campaign(session, clock, "other")
    busy = _event(session, clock, mine, 30)
    _attempt(session, busy, 1, "busy")
    _attempt(session, busy, 2, "answered")
    _attempt(session, _event(session, clock, mine, 40), 1, None)  # still running: no outcome yet
    until = clock.now() + timedelta(hours=3)
    for _ in range(2):
        _event(session, clock, mine, 10, deferred_reason="outside calling hours", deferred_until=until)
    _event(session, clock, mine, 5, status=EventStatus.COMPLETED)
    _attempt(session, _event(session, clock, other, 1), 1, "busy")

    assert progress.outcome_counts(session, mine.id) == {"answered": 1, "busy": 1}
    assert progress.waiting(session, mine.id) == [
        progress.Waiting("outside calling hours", 2, until),  # equal counts: by reason
        progress.Waiting(progress.NOT_DEFERRED, 2, None),
    ]
    due = progress.next_due(session, [mine.id, other.id, uuid.uuid4()])
    assert due == {mine.id: clock.now() + timedelta(minutes=10), other.id: clock.now() + timedelta(minutes=1)}
    assert progress.next_due(session, []) == {}


def test_many_reasons_fold_into_other(session: Session, clock: FrozenClock) -> None:
    mine = _campaign(session, clock)
    for i in range(progress.MAX_WAITING_REASONS + 3):
        _event(session, clock, mine, 10, deferred_reason=f"reason {i:02}")
    groups = progress.waiting(session, mine.id)
    assert len(groups) == progress.MAX_WAITING_REASONS
    assert groups[-1].reason == "other reasons" and groups[-1].count == 4


def test_an_event_of_another_campaign_is_not_found(session: Session, clock: FrozenClock) -> None:
    mine, other = _campaign(session, clock, "mine"), _campaign(session, clock, "other")
    event = _event(session, clock, mine, 10)
    assert progress.campaign_event(session, mine, str(event.id)) is event
    for ref in (str(event.id), "not-a-uuid"):
        with pytest.raises(NotFound):
            progress.campaign_event(session, other, ref)


def test_attempt_timeline_buckets_attempts_by_send_time_and_outcome(session: Session, clock: FrozenClock) -> None:
    mine, other = _campaign(session, clock, "mine"), _campaign(session, clock, "other")
    assert progress.attempt_timeline(session, mine.id).counts == []
    start = clock.now().replace(hour=13, minute=0, second=0, microsecond=0)
    sent = [(0, "answered"), (4, "busy"), (9, "answered"), (95, None), (119, "no-answer")]  # minutes after start
    for minutes, outcome in sent:
        _attempt(session, _event(session, clock, mine, 1), 1, outcome)
        session.execute(
            update(CallAttempt)
            .where(CallAttempt.attempted_at.is_(None), CallAttempt.claimed_at.is_not(None))
            .values(attempted_at=start + timedelta(minutes=minutes, seconds=30))
        )
    _attempt(session, _event(session, clock, other, 1), 1, "failed")  # another campaign's: not counted
    never_sent = _event(session, clock, mine, 1)
    _attempt(session, never_sent, 1, None)  # claimed, not sent yet: no attempted_at
    session.flush()
    timeline = progress.attempt_timeline(session, mine.id, buckets=24)
    # Two hours in at most 24 bars: 5-minute buckets from 13:00.
    assert timeline.start == start and timeline.width == timedelta(minutes=5)
    assert len(timeline.counts) == 24
    assert timeline.counts[0] == {"answered": 1, "busy": 1}
    assert timeline.counts[1] == {"answered": 1}
    assert timeline.counts[19] == {progress.IN_FLIGHT: 1}
    assert timeline.counts[23] == {"no-answer": 1}
    assert sum(sum(b.values()) for b in timeline.counts) == 5
