"""Claiming due events (DESIGN.md §2.1): ``pending`` with ``scheduled_at <= now`` → ``in_progress`` with a lease,
and an attempt row ``attempt_number = retry_count + free_attempts + 1`` created in the same transaction, before
any network call.
The claim-time checks (``checks``) run on each claimed event first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

import campaigns.lifecycle.transitions as transitions
from campaigns.ids import uuid7
from campaigns.lifecycle.checks import ClaimCheck, Defer, Suppress, default_checks, recipient_key
from campaigns.lifecycle.locking import WITHOUT_ATTEMPTS
from campaigns.models import CallAttempt, ScheduledEvent
from campaigns.states import AttemptState, CampaignStatus, EventStatus
from campaigns.telephony import Providers

PENDING, IN_PROGRESS = EventStatus.PENDING, EventStatus.IN_PROGRESS
"""Written into the SQL below as literals, not parameters: the partial index on due rows (``status =
'pending'``) only serves a query whose predicate names the same literal."""

CLAIMABLE = (
    "(campaign_id IS NULL OR campaign_id NOT IN "
    f"(SELECT id FROM campaigns WHERE status IN ('{CampaignStatus.PAUSED}', '{CampaignStatus.CANCELED}')))"
)
"""Events of paused or canceled campaigns are skipped by the scheduler (and do not wake it)."""


@dataclass(frozen=True)
class Claimed:
    event_id: uuid.UUID
    attempt_id: uuid.UUID


def claim_due_events(
    session: Session,
    *,
    now: datetime,
    limit: int,
    lease: timedelta,
    providers: Providers,
    checks: Sequence[ClaimCheck] | None = None,
) -> list[Claimed]:
    """Claim up to ``limit`` due pending events and create their attempt rows, in the caller's transaction.

    ``FOR UPDATE SKIP LOCKED`` lets several schedulers run at once without claiming the same row; the partial
    index on pending rows keeps the cost proportional to the due rows, not the table.
    """
    rows = session.execute(
        text(
            f"""
            WITH due AS (
                SELECT id FROM scheduled_events
                WHERE status = '{PENDING}' AND scheduled_at_fixed_datetime <= :now AND {CLAIMABLE}
                ORDER BY scheduled_at_fixed_datetime
                LIMIT :limit
                FOR UPDATE SKIP LOCKED
            )
            UPDATE scheduled_events AS e
            SET status = '{IN_PROGRESS}', lease_expires_at = :lease_until, updated_at = :now,
                deferred_reason = NULL, deferred_until = NULL
            FROM due WHERE e.id = due.id
            RETURNING e.id
            """
        ),
        {"now": now, "limit": limit, "lease_until": now + lease},
    ).all()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    events = session.scalars(
        select(ScheduledEvent)
        .where(ScheduledEvent.id.in_(ids))
        .options(WITHOUT_ATTEMPTS)
        .order_by(ScheduledEvent.scheduled_at_fixed_datetime)
        .execution_options(populate_existing=True)
    ).all()
    claimed: list[Claimed] = []
    attempts: list[dict[str, object]] = []
    batch_checks = default_checks() if checks is None else checks  # once per batch: pacing counts accumulate
    for event in events:
        decision = _run_checks(session, event, now, batch_checks)
        if isinstance(decision, Defer):
            transitions.defer(event, decision.until, decision.reason, decision.kind, now=now)
            continue
        if isinstance(decision, Suppress):
            transitions.suppress(event, decision.reason, decision.kind, now=now)
            continue
        attempt_id = uuid7()
        attempts.append(
            {
                "id": attempt_id,
                "event_id": event.id,
                "attempt_number": transitions.current_attempt_number(event),
                "state": AttemptState.CLAIMED,
                "provider": providers.for_channel(event.telnyx_conversation_channel).name,
                "claimed_at": now,
                "answered": False,
                "recipient": recipient_key(event.telnyx_end_user_target),
            }
        )
        claimed.append(Claimed(event_id=event.id, attempt_id=attempt_id))
    if attempts:
        session.execute(insert(CallAttempt), attempts)
    session.flush()
    return claimed


def _run_checks(
    session: Session, event: ScheduledEvent, now: datetime, checks: Sequence[ClaimCheck]
) -> Defer | Suppress | None:
    for check in checks:
        decision = check(session, event, now)
        if decision is not None:
            return decision
    return None


def next_due_at(session: Session) -> datetime | None:
    """When the earliest pending event is due (served by the partial index)."""
    due: datetime | None = session.scalar(
        text(
            f"SELECT scheduled_at_fixed_datetime FROM scheduled_events WHERE status = '{PENDING}' AND {CLAIMABLE} "
            "ORDER BY scheduled_at_fixed_datetime LIMIT 1"
        )
    )
    return due
