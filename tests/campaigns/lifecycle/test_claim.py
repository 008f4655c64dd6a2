"""Claiming due events (campaigns/lifecycle/claim.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from campaigns.clock import FrozenClock
from campaigns.models import CallAttempt
from tests.factories import make_event


def test_claim_uses_the_partial_index(session: Session) -> None:
    session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(
        row[0]
        for row in session.execute(
            text(
                "EXPLAIN SELECT id FROM scheduled_events WHERE status = 'pending' "
                "AND scheduled_at_fixed_datetime <= now() ORDER BY scheduled_at_fixed_datetime LIMIT 10"
            )
        )
    )
    assert "ix_scheduled_events_due_pending" in plan


def test_attempt_numbers_are_unique_per_event(session: Session, clock: FrozenClock) -> None:
    from sqlalchemy.exc import IntegrityError

    event = make_event(session, clock.now())
    for _ in range(2):
        session.add(CallAttempt(event_id=event.id, attempt_number=1, provider="texml", claimed_at=clock.now()))
    with pytest.raises(IntegrityError):
        session.flush()
