"""The event lifecycle (DESIGN.md §2): claim, dispatch bookkeeping, outcomes, retries, reconciliation.

Every function takes the session of the caller's unit of work and only flushes. Network calls never happen
inside these functions: the worker commits ``begin_dispatch`` *before* it calls the provider, which is what
makes dialing at-most-once per attempt.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import ColumnElement, delete, func, insert, select, text
from sqlalchemy.orm import Session, lazyload, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from campaigns import logs, metrics, windows
from campaigns.db import unit_of_work
from campaigns.ids import uuid7
from campaigns.models import CallAttempt, Campaign, ScheduledEvent
from campaigns.provider import DispatchRequest, DispatchResult, Providers, request_pool

log = logging.getLogger(__name__)

_WITHOUT_ATTEMPTS = lazyload(ScheduledEvent.attempts)
"""The state machine never reads ``event.attempts``: skip the eager (selectin) load of the whole history."""

RETRYABLE_CALL_STATUSES = frozenset({"busy", "no-answer", "failed", "canceled"})
TERMINAL_CALL_STATUSES = RETRYABLE_CALL_STATUSES | {"completed"}
SMS_SUCCESS = frozenset({"delivered", "sent", "delivery_unconfirmed"})
SMS_FAILURE = frozenset({"delivery_failed", "sending_failed"})
RECONCILE_CONCURRENCY = 16
"""How many "is this call still up?" questions one reconcile pass has in flight at once."""
BUDGET_EXHAUSTED = "client-error retry budget exhausted after {n} attempt(s); last call status: {status}"


# --- claim-time checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Defer:
    """Put the event back to ``pending`` until ``until``; no retry budget is consumed."""

    until: datetime
    reason: str
    kind: str = "window"
    """Bounded label for metrics and reports: ``window``, ``held``, ``pacing`` or ``frequency_cap``."""


@dataclass(frozen=True)
class Suppress:
    """Fail the event without dispatching it."""

    reason: str
    kind: str = "do_not_contact"
    """Bounded label for metrics and reports: ``do_not_contact`` (the suppression list, opt-outs, blocks)."""


class ClaimCheck(Protocol):
    """A check run on each claimed event before its attempt is created (windows, suppression, pacing)."""

    def __call__(self, session: Session, event: ScheduledEvent, now: datetime) -> Defer | Suppress | None: ...


CLAIMABLE = (
    "(campaign_id IS NULL OR campaign_id NOT IN (SELECT id FROM campaigns WHERE status IN ('paused', 'canceled')))"
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
                WHERE status = 'pending' AND scheduled_at_fixed_datetime <= :now AND {CLAIMABLE}
                ORDER BY scheduled_at_fixed_datetime
                LIMIT :limit
                FOR UPDATE SKIP LOCKED
            )
            UPDATE scheduled_events AS e
            SET status = 'in_progress', lease_expires_at = :lease_until, updated_at = :now,
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
        .options(_WITHOUT_ATTEMPTS)
        .order_by(ScheduledEvent.scheduled_at_fixed_datetime)
        .execution_options(populate_existing=True)
    ).all()
    claimed: list[Claimed] = []
    attempts: list[dict[str, object]] = []
    batch_checks = default_checks() if checks is None else checks  # once per batch: pacing counts accumulate
    for event in events:
        decision = _run_checks(session, event, now, batch_checks)
        if isinstance(decision, Defer):
            _defer(event, decision)
            continue
        if isinstance(decision, Suppress):
            event.status = "failed"
            event.lease_expires_at = None
            event.errors = [*event.errors, decision.reason]
            metrics.SUPPRESSIONS.labels(decision.kind).inc()
            metrics.count_finished(event.telnyx_conversation_channel, "failed")
            log.info("event suppressed", extra={**logs.event_fields(event), "reason": decision.reason})
            continue
        attempt_id = uuid7()
        attempts.append(
            {
                "id": attempt_id,
                "event_id": event.id,
                "attempt_number": event.retry_count + 1,
                "state": "claimed",
                "provider": providers.for_channel(event.telnyx_conversation_channel).name,
                "claimed_at": now,
                "answered": False,
                "recipient": event.telnyx_end_user_target,
            }
        )
        claimed.append(Claimed(event_id=event.id, attempt_id=attempt_id))
    if attempts:
        session.execute(insert(CallAttempt), attempts)
    session.flush()
    return claimed


def _defer(event: ScheduledEvent, decision: Defer) -> None:
    """Back to ``pending`` until ``decision.until``, saying why; no retry budget is consumed."""
    event.status = "pending"
    event.scheduled_at_fixed_datetime = decision.until
    event.lease_expires_at = None
    event.deferred_reason = decision.reason
    event.deferred_until = decision.until
    metrics.DEFERRALS.labels(decision.kind).inc()
    log.info("event deferred", extra={**logs.event_fields(event), "until": decision.until.isoformat()})


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
            f"SELECT scheduled_at_fixed_datetime FROM scheduled_events WHERE status = 'pending' AND {CLAIMABLE} "
            "ORDER BY scheduled_at_fixed_datetime LIMIT 1"
        )
    )
    return due


# --- dispatch bookkeeping ---------------------------------------------------------------------------------


def _lock_attempt(session: Session, attempt_id: uuid.UUID) -> tuple[CallAttempt, ScheduledEvent] | None:
    """Lock the event, then the attempt (always in this order, so concurrent handlers cannot deadlock)."""
    event_id = session.scalar(select(CallAttempt.event_id).where(CallAttempt.id == attempt_id))
    if event_id is None:
        return None
    event = session.scalars(
        select(ScheduledEvent)
        .where(ScheduledEvent.id == event_id)
        .options(_WITHOUT_ATTEMPTS)
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


def _withdraw_attempt(session: Session, attempt: CallAttempt, event: ScheduledEvent) -> None:
    """Remove an attempt that never reached the provider (it is not part of the audit trail)."""
    session.execute(delete(CallAttempt).where(CallAttempt.id == attempt.id))
    session.expire(event, ["attempts"])


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
            .options(_WITHOUT_ATTEMPTS)
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


def _lock_attempts(session: Session, attempt_ids: Sequence[uuid.UUID]) -> list[tuple[CallAttempt, ScheduledEvent]]:
    """Lock the events of several attempts in id order, then read the attempts; pairs come back in the order of
    ``attempt_ids``, unknown ids left out."""
    if not attempt_ids:
        return []
    events = ScheduledEvent.id.in_(select(CallAttempt.event_id).where(CallAttempt.id.in_(attempt_ids)))
    pairs = _lock_batch(session, events, attempt_ids)
    return [pairs[a] for a in attempt_ids if a in pairs]


def _suppressed(session: Session, pairs: Sequence[tuple[CallAttempt, ScheduledEvent]]) -> dict[str, str]:
    """Re-check the do-not-contact list right before sending: a STOP may have arrived since the claim."""
    from campaigns.suppression import suppressed_targets  # suppression imports this module

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
    if attempt.state != "claimed" or event.status != "in_progress":
        return None
    if event.cancel_requested:
        _withdraw_attempt(session, attempt, event)
        _finish(event, "canceled", now, "canceled by request before dispatch")
        return None
    reason = suppressed.get(event.telnyx_end_user_target)
    if reason is not None:
        from campaigns.suppression import suppressed_error

        _withdraw_attempt(session, attempt, event)
        _finish(event, "failed", now, suppressed_error(event.telnyx_end_user_target, reason))
        metrics.SUPPRESSIONS.labels("do_not_contact").inc()
        return None
    late = window_check(session, event, now)
    if late is not None:  # claimed inside the window, but the queue held it past closing time
        _withdraw_attempt(session, attempt, event)
        _defer(event, late)
        event.updated_at = now
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
    pairs = _lock_attempts(session, attempt_ids)
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
            text("UPDATE call_attempts SET state = 'sending', attempted_at = :now WHERE id = ANY(:ids)"),
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
            set_committed_value(attempt, "state", "sending")
            set_committed_value(attempt, "attempted_at", now)
            set_committed_value(event, "dispatched_at", now)
            set_committed_value(event, "lease_expires_at", lease_until)
            set_committed_value(event, "updated_at", now)
    return requests


_RECORD_DISPATCHED = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:provider_ids AS text[]), CAST(:statuses AS text[]))
            AS v(id, provider_id, status)
    ),
    moved AS (
        UPDATE call_attempts AS a
        SET state = 'sent', provider_id = coalesce(a.provider_id, v.provider_id),
            last_status = coalesce(a.last_status, v.status)
        FROM v WHERE a.id = v.id AND a.state IN ('sending', 'unknown')
        RETURNING a.event_id
    ),
    kept AS (
        UPDATE call_attempts AS a SET provider_id = v.provider_id
        FROM v WHERE a.id = v.id AND a.state NOT IN ('sending', 'unknown') AND a.provider_id IS NULL
        RETURNING a.id
    )
    UPDATE scheduled_events AS e SET lease_expires_at = :lease_until
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
) -> None:
    """The provider accepted these requests: keep their ids (one transaction, three set-based statements).

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
            "in_progress": [event_id for event_id, status in locked if status == "in_progress"],
            "ids": ids,
            "provider_ids": [by_id[i].provider_id for i in ids],
            "statuses": [by_id[i].status for i in ids],
            "lease_until": now + call_lease,
        },
    )


def record_refused(session: Session, attempt_id: uuid.UUID, reason: str, *, now: datetime, retry_at: datetime) -> None:
    """The provider refused before placing anything (429, 503, unreachable): back to pending, budget intact."""
    locked = _lock_attempt(session, attempt_id)
    if locked is None:
        return
    attempt, event = locked
    if attempt.state != "sending":
        return
    _withdraw_attempt(session, attempt, event)
    if event.cancel_requested:
        _finish(event, "canceled", now, "canceled by request before dispatch")
    else:
        event.status = "pending"
        event.scheduled_at_fixed_datetime = retry_at
        event.lease_expires_at = None
        event.deferred_reason = f"provider refused: {reason}"
        event.deferred_until = retry_at
        event.updated_at = now
    session.flush()


def record_rejected(session: Session, attempt_id: uuid.UUID, reason: str, *, now: datetime) -> None:
    """The provider rejected the request for good: the event fails with the provider's error."""
    locked = _lock_attempt(session, attempt_id)
    if locked is None:
        return
    attempt, event = locked
    if attempt.state != "sending":
        return
    attempt.state = "finished"
    attempt.call_status = "failed"
    attempt.error = reason
    attempt.finished_at = now
    if event.telnyx_conversation_channel == "phone_call":
        metrics.CALL_ATTEMPTS.labels("failed").inc()
    event.call_status = "failed" if event.telnyx_conversation_channel == "phone_call" else None
    _finish(event, "failed", now, reason)
    session.flush()


def record_outcome_unknown(
    session: Session, attempt_id: uuid.UUID, reason: str, *, now: datetime, call_lease: timedelta
) -> None:
    """The request may have been placed: never re-send; a callback or the reconciler settles it.

    The event gets the lease of a dispatched call: if the call was placed, its callbacks (which name the attempt)
    settle it, and a call lasts longer than the short dispatch lease. Left at the dispatch lease, the reconciler
    failed a live call closed after two minutes and its real outcome arrived to find the attempt closed.
    """
    locked = _lock_attempt(session, attempt_id)
    if locked is None:
        return
    attempt, event = locked
    if attempt.state == "sending":
        attempt.state = "unknown"
        attempt.error = reason
        if current_attempt_matches(event, attempt):
            event.lease_expires_at = now + call_lease
    session.flush()


# --- outcomes ---------------------------------------------------------------------------------------------


def _finish(event: ScheduledEvent, status: str, now: datetime, error: str | None = None) -> None:
    metrics.count_finished(event.telnyx_conversation_channel, status)
    event.status = status
    event.lease_expires_at = None
    event.updated_at = now
    if error:
        event.errors = [*event.errors, error]


def current_attempt_matches(event: ScheduledEvent, attempt: CallAttempt) -> bool:
    """Only the event's current attempt may move the event; an older one is stale."""
    return event.status == "in_progress" and attempt.attempt_number == event.retry_count + 1


@dataclass(frozen=True)
class OutcomeResult:
    applied: bool
    reason: str


def lock_attempts(
    session: Session, event_of: Mapping[uuid.UUID, uuid.UUID]
) -> dict[uuid.UUID, tuple[CallAttempt, ScheduledEvent]]:
    """``_lock_attempt`` for a batch whose attempts' events are already known (``event_of``: attempt → event).

    Locked as ``_lock_attempts`` locks a dispatch batch; an attempt withdrawn meanwhile is left out. Pass the
    pairs to the ``*_locked`` functions below and flush once for the batch.
    """
    if not event_of:
        return {}
    return _lock_batch(session, ScheduledEvent.id.in_(sorted(set(event_of.values()))), list(event_of))


def apply_progress(
    session: Session,
    attempt_id: uuid.UUID,
    status: str,
    *,
    sequence: int | None,
    answered: bool,
    now: datetime,
    provider_id: str | None = None,
) -> OutcomeResult:
    """A non-terminal callback (initiated, ringing, answered): recorded on the attempt, never moves back."""
    locked = _lock_attempt(session, attempt_id)
    if locked is None:
        return OutcomeResult(False, "unknown attempt")
    result = apply_progress_locked(
        *locked, status, sequence=sequence, answered=answered, now=now, provider_id=provider_id
    )
    session.flush()
    return result


def apply_progress_locked(
    attempt: CallAttempt,
    event: ScheduledEvent,
    status: str,
    *,
    sequence: int | None,
    answered: bool,
    now: datetime,
    provider_id: str | None = None,
) -> OutcomeResult:
    """``apply_progress`` on an attempt whose event the caller has locked (``lock_attempts``); not flushed.

    The call exists (``_placed``): the reconciler asks the provider about it when its lease ends instead of
    failing it closed.
    """
    if attempt.call_status is not None:
        return OutcomeResult(False, "attempt already finished")
    _placed(attempt, provider_id)
    if sequence is not None and attempt.last_sequence is not None and sequence <= attempt.last_sequence:
        return OutcomeResult(False, "stale")
    attempt.last_status = status
    attempt.answered = attempt.answered or answered
    if sequence is not None:
        attempt.last_sequence = sequence
    return OutcomeResult(True, "progress")


def _placed(attempt: CallAttempt, provider_id: str | None) -> None:
    """A callback about the attempt proves the provider placed it: one still ``sending`` (the worker's answer not
    recorded yet, or the worker died) or ``unknown`` (the request timed out) becomes ``sent``, with the provider's
    id, as ``record_dispatched_many`` would have made it."""
    if attempt.state in ("sending", "unknown"):
        attempt.state = "sent"
    attempt.provider_id = attempt.provider_id or provider_id


def apply_call_outcome(
    session: Session,
    attempt_id: uuid.UUID,
    call_status: str,
    *,
    duration: int | None,
    now: datetime,
    sequence: int | None = None,
    provider_id: str | None = None,
) -> OutcomeResult:
    """A terminal call status: finish the attempt, then complete, retry or fail the event (DESIGN.md §2.4)."""
    if call_status not in TERMINAL_CALL_STATUSES:
        raise ValueError(f"not a terminal call status: {call_status}")
    locked = _lock_attempt(session, attempt_id)
    if locked is None:
        return OutcomeResult(False, "unknown attempt")
    result = apply_call_outcome_locked(
        session, *locked, call_status, duration=duration, now=now, sequence=sequence, provider_id=provider_id
    )
    session.flush()
    return result


def apply_call_outcome_locked(
    session: Session,
    attempt: CallAttempt,
    event: ScheduledEvent,
    call_status: str,
    *,
    duration: int | None,
    now: datetime,
    sequence: int | None = None,
    provider_id: str | None = None,
) -> OutcomeResult:
    """``apply_call_outcome`` on an attempt whose event the caller has locked (``lock_attempts``); not flushed."""
    if call_status not in TERMINAL_CALL_STATUSES:
        raise ValueError(f"not a terminal call status: {call_status}")
    if attempt.call_status is not None:
        return OutcomeResult(False, "duplicate")
    attempt.call_status = call_status
    metrics.CALL_ATTEMPTS.labels(call_status).inc()
    attempt.call_duration = duration
    attempt.finished_at = now
    attempt.state = "finished"
    attempt.provider_id = attempt.provider_id or provider_id
    if sequence is not None:
        attempt.last_sequence = max(sequence, attempt.last_sequence or 0)
    if attempt.attempted_at is None:
        attempt.attempted_at = now
    if not current_attempt_matches(event, attempt):
        return OutcomeResult(False, "stale: event has moved on")
    event.call_status = call_status
    event.call_duration = duration
    event.updated_at = now
    if call_status == "completed":
        _finish(event, "completed", now)
    elif event.cancel_requested:
        _finish(event, "canceled", now, f"canceled by request; last call status: {call_status}")
    elif event.retry_count < event.max_retries_client_errors:
        interval = timedelta(seconds=event.retry_interval_secs or 0)
        event.retry_count += 1
        event.status = "pending"
        event.scheduled_at_fixed_datetime = next_retry_time(session, event, now + interval)
        event.lease_expires_at = None
        metrics.RETRIES_SCHEDULED.labels(call_status).inc()
        log.info(
            "retry scheduled",
            extra={**logs.event_fields(event), "at": event.scheduled_at_fixed_datetime.isoformat()},
        )
    else:
        _finish(event, "failed", now, BUDGET_EXHAUSTED.format(n=attempt.attempt_number, status=call_status))
    return OutcomeResult(True, call_status)


def next_retry_time(session: Session, event: ScheduledEvent, earliest: datetime) -> datetime:
    """When a retry may run: ``max(earliest, next window opening)`` (held when no opening can be found)."""
    context = _window_context(session, event)
    if context is None:
        return earliest
    ruleset, recipient = context
    if ruleset is None or not recipient.zones:
        return windows.HOLD_UNTIL
    return windows.next_opening(earliest, recipient, ruleset) or windows.HOLD_UNTIL


def _window_context(session: Session, event: ScheduledEvent) -> tuple[windows.Ruleset | None, windows.Recipient] | None:
    """The event's ruleset and recipient; ``None`` when no window applies; a ``None`` ruleset when it is unusable.

    Candidate zones are resolved once, at the first check, and stored on the event.
    """
    if event.ruleset == "none":
        return None
    campaign = session.get(Campaign, event.campaign_id) if event.campaign_id is not None else None
    try:
        ruleset: windows.Ruleset | None = windows.get_ruleset(
            event.ruleset, campaign.custom_windows if campaign is not None else None
        )
    except windows.RulesetError:
        ruleset = None
    if event.timezone_candidates is None:
        event.timezone_candidates = windows.candidate_zones(
            phone=event.telnyx_end_user_target,
            timezone=event.timezone,
            state=event.state,
            default_zone=campaign.timezone if campaign is not None else None,
        )
    recipient = windows.recipient_for(
        phone=event.telnyx_end_user_target, zones=event.timezone_candidates, state=event.state
    )
    return ruleset, recipient


def window_check(session: Session, event: ScheduledEvent, now: datetime) -> Defer | None:
    """Defer an event whose recipient is outside the calling window to the next opening (or hold it)."""
    context = _window_context(session, event)
    if context is None:
        return None
    ruleset, recipient = context
    if ruleset is None:
        return Defer(windows.HOLD_UNTIL, f"held: ruleset {event.ruleset!r} is not defined or invalid", kind="held")
    if not ruleset.needs_zone:
        return None
    if not recipient.zones:
        return Defer(windows.HOLD_UNTIL, "held: the recipient's time zone could not be determined", kind="held")
    if windows.is_allowed(now, recipient, ruleset):
        return None
    opening = windows.cached_next_opening(now, recipient, ruleset)
    if opening is None:
        return Defer(
            windows.HOLD_UNTIL,
            f"held: no opening within {windows.SEARCH_DAYS} days under ruleset {ruleset.label}",
            kind="held",
        )
    blocking = sorted({v.rule.id for v in windows.verdicts(now, recipient, ruleset) if not v.allowed})
    return Defer(
        opening,
        f"outside the calling window ({ruleset.label}: {', '.join(blocking)}) in {', '.join(recipient.zones)}",
    )


class FrequencyCapCheck:
    """Rolling-window attempt caps per recipient, across all campaigns and caller numbers.

    Caps come from the ruleset's state rules (e.g. Florida: 3 per 24 h) and from the campaign
    (``cap_max_attempts`` per ``cap_window_secs``). Every attempt row counts (withdrawn attempts are deleted, so
    only dials that were or may have been placed remain), plus the attempts this batch is about to create. A
    per-number advisory lock, held until the claim commits, keeps two schedulers from both taking the last slot;
    a scheduler that cannot take it defers the event by a second instead of waiting. A capped event is deferred
    to when the oldest counted attempt leaves the window: deferred, never dropped.
    """

    def __init__(self) -> None:
        self.batch: dict[str, list[datetime]] = {}

    def _caps(self, session: Session, event: ScheduledEvent) -> list[tuple[str, windows.Cap]]:
        caps: list[tuple[str, windows.Cap]] = []
        context = _window_context(session, event)
        if context is not None and context[0] is not None:
            ruleset, recipient = context[0], context[1]
            caps += [(f"{rule.id}: {rule.citation}", cap) for rule, cap in ruleset.caps_for(recipient.states)]
        campaign = session.get(Campaign, event.campaign_id) if event.campaign_id is not None else None
        if campaign is not None and campaign.cap_max_attempts:
            window = timedelta(seconds=campaign.cap_window_secs or 86400)
            caps.append(("campaign cap", windows.Cap(campaign.cap_max_attempts, window)))
        return caps

    def __call__(self, session: Session, event: ScheduledEvent, now: datetime) -> Defer | None:
        caps = self._caps(session, event)
        if not caps:
            return None
        target = event.telnyx_end_user_target
        if target not in self.batch:
            locked = session.execute(
                text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"cap:{target}"}
            ).scalar_one()
            if not locked:
                return Defer(
                    now + timedelta(seconds=1), "frequency cap: another scheduler is counting", kind="frequency_cap"
                )
            self.batch[target] = []
        longest = max(cap.window for _, cap in caps)
        history = list(
            session.scalars(
                select(CallAttempt.claimed_at)
                .where(CallAttempt.recipient == target, CallAttempt.claimed_at > now - longest)
                .order_by(CallAttempt.claimed_at.desc())
            )
        )
        times = sorted([*history, *self.batch[target]], reverse=True)
        until: datetime | None = None
        reasons: list[str] = []
        for source, cap in caps:
            recent = [t for t in times if t > now - cap.window]
            if len(recent) >= cap.attempts:
                free_at = recent[cap.attempts - 1] + cap.window
                if until is None or free_at > until:
                    until = free_at
                hours = cap.window.total_seconds() / 3600
                reasons.append(f"{cap.attempts} attempts per {hours:g} h ({source})")
        if until is not None:
            return Defer(until, f"frequency cap: {'; '.join(reasons)}", kind="frequency_cap")
        self.batch[target].append(now)
        return None


class PacingCheck:
    """A campaign's ``max_concurrent_calls`` and ``max_dispatches_per_second``, counted once per claim batch.

    Live calls are attempts not yet finished; the dispatch rate counts attempts claimed in the last (app) second.
    Events over a limit go back to ``pending`` shortly after, without consuming an attempt.
    """

    def __init__(self) -> None:
        self.limits: dict[uuid.UUID, tuple[int | None, float | None]] = {}
        self.used: dict[uuid.UUID, list[int]] = {}

    def __call__(self, session: Session, event: ScheduledEvent, now: datetime) -> Defer | None:
        campaign_id = event.campaign_id
        if campaign_id is None:
            return None
        if campaign_id not in self.limits:
            row = session.execute(
                select(Campaign.max_concurrent_calls, Campaign.max_dispatches_per_second).where(
                    Campaign.id == campaign_id
                )
            ).one()
            self.limits[campaign_id] = (row[0], row[1])
            live = recent = 0
            if row[0] is not None or row[1] is not None:
                live, recent = session.execute(
                    select(
                        func.count().filter(CallAttempt.state.in_(("claimed", "sending", "sent", "unknown"))),
                        func.count().filter(CallAttempt.claimed_at > now - timedelta(seconds=1)),
                    )
                    .join(ScheduledEvent, ScheduledEvent.id == CallAttempt.event_id)
                    .where(ScheduledEvent.campaign_id == campaign_id)
                ).one()
            self.used[campaign_id] = [int(live), int(recent)]
        max_live, max_rate = self.limits[campaign_id]
        used = self.used[campaign_id]
        if max_live is not None and used[0] >= max_live:
            return Defer(now + timedelta(seconds=1), f"pacing: {max_live} concurrent calls in progress", kind="pacing")
        if max_rate is not None and used[1] >= max_rate:
            return Defer(
                now + timedelta(seconds=1), f"pacing: {max_rate:g} dispatches per second reached", kind="pacing"
            )
        used[0] += 1
        used[1] += 1
        return None


def default_checks() -> tuple[ClaimCheck, ...]:
    """The checks every claim runs, fresh per batch: do-not-contact first, then the calling window, then pacing;
    the frequency cap last, because it counts the attempt it lets through."""
    from campaigns.suppression import DoNotContactCheck  # suppression imports this module

    return (DoNotContactCheck(), window_check, PacingCheck(), FrequencyCapCheck())


def apply_sms_outcome(
    session: Session, attempt_id: uuid.UUID, status: str, *, now: datetime, provider_id: str | None = None
) -> OutcomeResult:
    """A messaging status: ``delivered`` completes, ``delivery_failed``/``sending_failed`` fail; ``sent`` waits."""
    locked = _lock_attempt(session, attempt_id)
    if locked is None:
        return OutcomeResult(False, "unknown attempt")
    result = apply_sms_outcome_locked(*locked, status, now=now, provider_id=provider_id)
    session.flush()
    return result


def apply_sms_outcome_locked(
    attempt: CallAttempt, event: ScheduledEvent, status: str, *, now: datetime, provider_id: str | None = None
) -> OutcomeResult:
    """``apply_sms_outcome`` on an attempt whose event the caller has locked (``lock_attempts``); not flushed.

    A receipt proves the message exists (``_placed``): the reconciler settles it as a sent message instead of
    failing it closed.
    """
    attempt.provider_id = attempt.provider_id or provider_id
    if attempt.call_status is not None:
        return OutcomeResult(False, "duplicate")
    _placed(attempt, provider_id)
    if status not in SMS_SUCCESS | SMS_FAILURE or status == "sent":
        if attempt.last_status not in SMS_SUCCESS | SMS_FAILURE:
            attempt.last_status = status
        return OutcomeResult(True, "progress")
    attempt.call_status = status
    attempt.state = "finished"
    attempt.finished_at = now
    if not current_attempt_matches(event, attempt):
        return OutcomeResult(False, "stale: event has moved on")
    if status in SMS_SUCCESS:
        _finish(event, "completed", now)
    else:
        _finish(event, "failed", now, f"message {status}")
    return OutcomeResult(True, status)


# --- reconciliation ---------------------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    withdrawn: int = 0
    extended: int = 0
    failed_unknown: int = 0
    completed_sms: int = 0


@dataclass(frozen=True)
class _LiveCheck:
    """A sent call whose lease expired: the provider is asked whether it is still up, with no lock held."""

    attempt_id: uuid.UUID
    provider: str
    provider_id: str


def reconcile_expired_leases(
    sessions: sessionmaker[Session], *, now: datetime, providers: Providers, call_lease: timedelta, limit: int = 500
) -> ReconcileReport:
    """Settle ``in_progress`` events whose lease expired without a terminal outcome.

    - never sent (attempt still ``claimed``, or no attempt): withdrawn, event back to ``pending`` now;
    - sent and the provider says the call is still up: lease extended;
    - an SMS the provider accepted (``sent``) with no final receipt: completed, as Telnyx would report it;
    - otherwise the attempt is closed as unknown and the event fails closed. It is never re-dialled.

    Three short transactions, so no event stays locked while the provider is asked about a call: a webhook for
    that event (or for any event batched with it) would wait behind a provider round trip per expired call. The
    first settles everything that needs no question and extends the lease of the calls to ask about by
    ``call_lease``, so a concurrent reconciler leaves them alone (and if this one dies, they come back when that
    lease expires); then the provider is asked; the last re-locks those events and fails closed the ones whose
    call is over and whose attempt is still the one asked about.
    """
    with unit_of_work(sessions) as session:
        report, checks = _settle_expired(session, now=now, call_lease=call_lease, limit=limit)
    if not checks:
        return report

    def ask(check: _LiveCheck) -> tuple[uuid.UUID, bool | None]:
        return check.attempt_id, providers.by_name(check.provider).call_is_alive(check.provider_id)

    # Up to RECONCILE_CONCURRENCY questions at once: a pass over hundreds of live calls took one round trip each.
    alive = dict(
        request_pool("reconcile", RECONCILE_CONCURRENCY).map(ask, checks) if len(checks) > 1 else map(ask, checks)
    )
    with unit_of_work(sessions) as session:
        for attempt, event in _lock_attempts(session, [check.attempt_id for check in checks]):
            if alive[attempt.id]:
                report.extended += 1
            elif attempt.state == "sent" and current_attempt_matches(event, attempt):
                _fail_unknown(attempt, event, now, "no terminal status arrived before the lease expired")
                report.failed_unknown += 1
            # else: settled by a webhook while the provider was asked
        session.flush()
    return report


def _settle_expired(
    session: Session, *, now: datetime, call_lease: timedelta, limit: int
) -> tuple[ReconcileReport, list[_LiveCheck]]:
    """Everything a reconcile pass can decide without the provider; the sent calls to ask about come back."""
    report = ReconcileReport()
    checks: list[_LiveCheck] = []
    events = session.scalars(
        select(ScheduledEvent)
        .where(ScheduledEvent.status == "in_progress", ScheduledEvent.lease_expires_at < now)
        .options(_WITHOUT_ATTEMPTS)
        .order_by(ScheduledEvent.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not events:
        return report, checks
    current = {  # each event's current attempt, one query for the batch
        attempt.event_id: attempt
        for attempt in session.scalars(
            select(CallAttempt)
            .join(ScheduledEvent, CallAttempt.event_id == ScheduledEvent.id)
            .where(
                ScheduledEvent.id.in_([event.id for event in events]),
                CallAttempt.attempt_number == ScheduledEvent.retry_count + 1,
            )
        )
    }
    withdrawn: list[uuid.UUID] = []
    for event in events:
        attempt = current.get(event.id)
        if attempt is None or attempt.state == "claimed":
            if attempt is not None:
                withdrawn.append(attempt.id)  # never reached the provider: not part of the audit trail
                session.expire(event, ["attempts"])
            if event.cancel_requested:
                _finish(event, "canceled", now, "canceled by request before dispatch")
            else:
                event.status = "pending"
                event.scheduled_at_fixed_datetime = now
                event.lease_expires_at = None
                event.updated_at = now
            report.withdrawn += 1
            continue
        if attempt.state == "finished":
            # Outcome recorded but the event never moved (should not happen); leave a trace and fail closed.
            _finish(event, "failed", now, f"attempt {attempt.attempt_number} finished without settling the event")
            report.failed_unknown += 1
            continue
        if attempt.state == "sent" and attempt.provider_id:
            if event.telnyx_conversation_channel == "sms_chat":
                if attempt.last_status == "sent":
                    attempt.state = "finished"
                    attempt.call_status = "sent"
                    attempt.finished_at = now
                    _finish(event, "completed", now)
                    report.completed_sms += 1
                    continue
            else:
                event.lease_expires_at = now + call_lease
                checks.append(_LiveCheck(attempt.id, attempt.provider, attempt.provider_id))
                continue
        why = (
            "the provider request timed out after sending"
            if attempt.state in ("sending", "unknown")
            else "no terminal status arrived before the lease expired"
        )
        _fail_unknown(attempt, event, now, why)
        report.failed_unknown += 1
    if withdrawn:
        session.execute(delete(CallAttempt).where(CallAttempt.id.in_(withdrawn)))
    session.flush()
    return report, checks


def _fail_unknown(attempt: CallAttempt, event: ScheduledEvent, now: datetime, why: str) -> None:
    """Close the attempt as unknown and fail the event closed: it may have rung, so it is never re-dialled."""
    attempt.state = "finished"
    attempt.call_status = "unknown"
    if event.telnyx_conversation_channel == "phone_call":
        metrics.CALL_ATTEMPTS.labels("unknown").inc()
    attempt.finished_at = now
    attempt.error = attempt.error or why
    _finish(
        event,
        "failed",
        now,
        f"attempt {attempt.attempt_number}: outcome unknown ({why}); not re-dialled to avoid a double call",
    )


__all__ = [
    "ClaimCheck",
    "Claimed",
    "Defer",
    "OutcomeResult",
    "ReconcileReport",
    "Suppress",
    "apply_call_outcome",
    "apply_call_outcome_locked",
    "apply_progress",
    "apply_progress_locked",
    "apply_sms_outcome",
    "apply_sms_outcome_locked",
    "begin_dispatch",
    "begin_dispatch_many",
    "claim_due_events",
    "lock_attempts",
    "next_due_at",
    "reconcile_expired_leases",
    "record_dispatched_many",
    "record_outcome_unknown",
    "record_refused",
    "record_rejected",
]
