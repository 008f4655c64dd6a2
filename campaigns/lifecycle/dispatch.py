"""Dispatch bookkeeping (DESIGN.md §2.3): mark claimed attempts ``sending`` and say what to send, then record
what the provider answered (accepted, refused, rejected, or nobody knows).

Every function takes the caller's session and only flushes. ``campaigns.dispatch`` commits ``begin_dispatch_many``
*before* it calls the provider, which is what makes dialing at-most-once per attempt: a redelivered task finds the
attempt already past ``claimed`` and gets nothing to send.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

import campaigns.lifecycle.transitions as transitions
from campaigns import logs, metrics
from campaigns.lifecycle.checks import suppressed_error, suppressed_targets, window_check
from campaigns.lifecycle.locking import lock_attempt, lock_attempts_by_id
from campaigns.models import CallAttempt, ScheduledEvent
from campaigns.states import AttemptState, EventStatus
from campaigns.telephony import DispatchRequest, DispatchResult

log = logging.getLogger(__name__)

SENDING, UNKNOWN, SENT = AttemptState.SENDING, AttemptState.UNKNOWN, AttemptState.SENT
"""Attempt states named in the set-based SQL below."""


def _suppressed(session: Session, pairs: Sequence[tuple[CallAttempt, ScheduledEvent]]) -> dict[str, str]:
    """Re-check the do-not-contact list right before sending: a STOP may have arrived since the claim."""
    return suppressed_targets(session, [event.telnyx_end_user_target for _, event in pairs])


def _begin(
    session: Session,
    attempt: CallAttempt,
    event: ScheduledEvent,
    now: datetime,
    suppressed: dict[str, str],
) -> DispatchRequest | None:
    """What to send for a claimed attempt, or ``None`` (settling a cancel, a suppression or a closed window).

    The caller marks the attempt ``sending`` when a request comes back (one row, or the whole batch at once).
    """
    if attempt.state != AttemptState.CLAIMED or event.status != EventStatus.IN_PROGRESS:
        return None
    if event.cancel_requested:
        transitions.withdraw_attempt(session, attempt, event)
        transitions.finish(event, EventStatus.CANCELED, now, transitions.CANCELED_BEFORE_DISPATCH)
        return None
    reason = suppressed.get(event.telnyx_end_user_target)
    if reason is not None:
        transitions.withdraw_attempt(session, attempt, event)
        error = suppressed_error(event.telnyx_end_user_target, reason)
        transitions.suppress(event, error, "do_not_contact", now=now)
        return None
    late = window_check(session, event, now)
    if late is not None:  # claimed inside the window, but the queue held it past closing time
        transitions.withdraw_attempt(session, attempt, event)
        transitions.defer(event, late.until, late.reason, late.kind, now=now)
        return None
    metrics.DISPATCH_LAG.labels(event.telnyx_conversation_channel).observe(
        max(0.0, (now - event.scheduled_at_fixed_datetime).total_seconds())
    )
    return DispatchRequest(
        attempt_id=attempt.id,
        channel=event.telnyx_conversation_channel,
        assistant_id=event.assistant_id,
        to=event.telnyx_end_user_target,
        from_=event.telnyx_agent_target,
        dynamic_variables=dict(event.dynamic_variables),
        text=event.text,
        connection_id=event.connection_id,
        sip_region=(event.call_settings or {}).get("sip_region"),
        answering_machine_detection=event.answering_machine_detection,
    )


def begin_dispatch(
    session: Session, attempt_id: uuid.UUID, *, now: datetime, dispatch_lease: timedelta
) -> DispatchRequest | None:
    """Mark the attempt ``sending`` and return what to send; ``None`` when there is nothing to do.

    The caller commits before calling the provider. A redelivered task finds the attempt already past
    ``claimed`` and returns ``None``: that is the at-most-once guard.
    """
    requests = begin_dispatch_many(session, [attempt_id], now=now, dispatch_lease=dispatch_lease)
    return requests[0] if requests else None


def begin_dispatch_many(
    session: Session, attempt_ids: Sequence[uuid.UUID], *, now: datetime, dispatch_lease: timedelta
) -> list[DispatchRequest]:
    """``begin_dispatch`` for a batch in one transaction: one commit (one WAL flush) instead of one per attempt.

    Same guard per attempt; what to send comes back in the order of ``attempt_ids``.
    """
    pairs = lock_attempts_by_id(session, attempt_ids)
    suppressed = _suppressed(session, pairs)
    requests = []
    sending: list[tuple[CallAttempt, ScheduledEvent]] = []
    for attempt, event in pairs:
        before = (attempt.state, event.status)
        request = _begin(session, attempt, event, now, suppressed)
        if request is not None:
            requests.append(request)
            sending.append((attempt, event))
        else:  # a redelivery, a cancel, a suppression or a closed window: say which, per attempt
            log.info(
                "attempt %s not sent: it was %s, its event %s (now %s)",
                attempt.id,
                before[0],
                before[1],
                event.status,
                extra=logs.event_fields(event),
            )
    if len(pairs) < len(attempt_ids):
        found = {attempt.id for attempt, _ in pairs}
        missing = [str(a) for a in attempt_ids if a not in found]
        log.warning("attempts to dispatch not found (withdrawn before the task ran?): %s", ", ".join(missing))
    session.flush()  # the exceptions above (withdrawn, deferred, finished), and zones resolved by the window check
    if sending:
        # The common case as two set-based statements rather than one UPDATE per row through the unit of work;
        # the loaded objects are brought in line without becoming dirty.
        lease_until = now + dispatch_lease
        session.execute(
            text(f"UPDATE call_attempts SET state = '{SENDING}', attempted_at = :now WHERE id = ANY(:ids)"),
            {"now": now, "ids": [attempt.id for attempt, _ in sending]},
        )
        session.execute(
            text(
                "UPDATE scheduled_events SET dispatched_at = :now, lease_expires_at = :lease_until, updated_at = :now"
                " WHERE id = ANY(:ids)"
            ),
            {"now": now, "lease_until": lease_until, "ids": [event.id for _, event in sending]},
        )
        for attempt, event in sending:
            set_committed_value(attempt, "state", SENDING)
            set_committed_value(attempt, "attempted_at", now)
            set_committed_value(event, "dispatched_at", now)
            set_committed_value(event, "lease_expires_at", lease_until)
            set_committed_value(event, "updated_at", now)
    return requests


_RECORD_DISPATCHED = text(
    f"""
    WITH v AS (
        SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:provider_ids AS text[]), CAST(:statuses AS text[]),
                             CAST(:sent_at AS timestamptz[]))
            AS v(id, provider_id, status, sent_at)
    ),
    moved AS (
        UPDATE call_attempts AS a
        SET state = '{SENT}', provider_id = coalesce(a.provider_id, v.provider_id),
            last_status = coalesce(a.last_status, v.status), attempted_at = coalesce(v.sent_at, a.attempted_at)
        FROM v WHERE a.id = v.id AND a.state IN ('{SENDING}', '{UNKNOWN}')
        RETURNING a.event_id, v.sent_at
    ),
    kept AS (
        UPDATE call_attempts AS a SET provider_id = v.provider_id
        FROM v WHERE a.id = v.id AND a.state NOT IN ('{SENDING}', '{UNKNOWN}') AND a.provider_id IS NULL
        RETURNING a.id
    )
    UPDATE scheduled_events AS e
    SET lease_expires_at = :lease_until, dispatched_at = coalesce(moved.sent_at, e.dispatched_at)
    FROM moved WHERE e.id = moved.event_id AND e.id = ANY(CAST(:in_progress AS uuid[]))
    """
)
"""The events' status is read under the lock, not tested here: ``e.status = 'in_progress'`` matches the partial
index of in-progress leases, and with statistics taken before a burst was claimed (when that index was empty)
the planner walked the whole index for every batch, joining each entry against the batch: 646 ms per batch with
42,000 events in progress, so a 100,000-event burst slowed as it went (240/s against 570/s for 20,000)."""


def record_dispatched_many(
    session: Session,
    results: Sequence[tuple[uuid.UUID, DispatchResult]],
    *,
    now: datetime,
    call_lease: timedelta,
    sent_at: Mapping[uuid.UUID, datetime] | None = None,
) -> None:
    """The provider accepted these requests: keep their ids (one transaction, three set-based statements).

    ``sent_at``: when each request went out. ``begin_dispatch_many`` stamped the whole batch with the time it
    committed ``sending``; this replaces it with each request's own time (the export's dispatch times).

    The events are locked first, in id order, as every batch path locks them (no deadlock with a webhook batch);
    then the provider id is kept (a callback may have stored it first), a ``sending`` (or ``unknown``) attempt
    becomes ``sent`` and its event's lease becomes the call lease.
    """
    if not results:
        return
    by_id = dict(results)
    ids = list(by_id)
    locked = session.execute(
        text(
            "SELECT e.id, e.status FROM scheduled_events e WHERE e.id IN "
            "(SELECT event_id FROM call_attempts WHERE id = ANY(:ids)) ORDER BY e.id FOR UPDATE OF e"
        ),
        {"ids": ids},
    ).all()
    session.execute(
        _RECORD_DISPATCHED,
        {
            "in_progress": [event_id for event_id, status in locked if status == EventStatus.IN_PROGRESS],
            "ids": ids,
            "provider_ids": [by_id[i].provider_id for i in ids],
            "statuses": [by_id[i].status for i in ids],
            "sent_at": [(sent_at or {}).get(i) for i in ids],
            "lease_until": now + call_lease,
        },
    )


def _lock_sending(session: Session, attempt_id: uuid.UUID) -> tuple[CallAttempt, ScheduledEvent] | None:
    """The attempt and its event, locked, while the attempt is still ``sending``: what the provider's answer is
    about. ``None`` once anything else moved it (a callback proved it placed, the reconciler settled it)."""
    locked = lock_attempt(session, attempt_id)
    if locked is None or locked[0].state != AttemptState.SENDING:
        return None
    return locked


def record_refused(session: Session, attempt_id: uuid.UUID, reason: str, *, now: datetime, retry_at: datetime) -> None:
    """The provider refused before placing anything (429, 503, unreachable): back to pending, budget intact."""
    locked = _lock_sending(session, attempt_id)
    if locked is None:
        return
    attempt, event = locked
    transitions.withdraw_attempt(session, attempt, event)
    transitions.release(event, retry_at, now=now, reason=f"provider refused: {reason}")
    session.flush()


def record_rejected(session: Session, attempt_id: uuid.UUID, reason: str, *, now: datetime) -> None:
    """The provider rejected the request for good: the event fails with the provider's error."""
    locked = _lock_sending(session, attempt_id)
    if locked is None:
        return
    attempt, event = locked
    transitions.reject(attempt, event, reason, now)
    session.flush()


def record_outcome_unknown(
    session: Session, attempt_id: uuid.UUID, reason: str, *, now: datetime, call_lease: timedelta
) -> None:
    """The request may have been placed: never re-send; a callback or the reconciler settles it.

    The event gets the lease of a dispatched call: if the call was placed, its callbacks (which name the attempt)
    settle it, and a call lasts longer than the short dispatch lease. Left at the dispatch lease, the reconciler
    failed a live call closed after two minutes and its real outcome arrived to find the attempt closed.
    """
    locked = _lock_sending(session, attempt_id)
    if locked is None:
        return
    attempt, event = locked
    transitions.outcome_unknown(attempt, reason)
    if transitions.current_attempt_matches(event, attempt):
        event.lease_expires_at = now + call_lease
    session.flush()
