"""Call and SMS outcomes (DESIGN.md §2.4): a terminal call status completes, retries or fails the event; a
messaging receipt completes or fails it; a progress callback is recorded on the attempt. Webhooks are at least
once and out of order: applying one twice, or a stale one after a newer, changes nothing.

Each ``apply_*`` locks the attempt's event itself; its ``apply_*_locked`` twin works on a pair the caller has
locked (``locking.lock_attempts``, a batch of webhooks) and does not flush.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

import campaigns.lifecycle.transitions as transitions
from campaigns import metrics, windows
from campaigns.lifecycle.checks import window_context
from campaigns.lifecycle.locking import lock_attempt
from campaigns.models import CallAttempt, ScheduledEvent
from campaigns.states import (
    SMS_FAILURE,
    SMS_SUCCESS,
    TERMINAL_CALL_STATUSES,
    CallStatus,
    Channel,
    EventStatus,
    MessageStatus,
    Outcome,
)

BUDGET_EXHAUSTED = "client-error retry budget exhausted after {n} attempt(s); last call status: {status}"


@dataclass(frozen=True)
class OutcomeResult:
    applied: bool
    reason: str


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
    locked = lock_attempt(session, attempt_id)
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

    The call exists (``transitions.placed``): the reconciler asks the provider about it when its lease ends instead of
    failing it closed.
    """
    if attempt.call_status is not None:
        return OutcomeResult(False, "attempt already finished")
    transitions.placed(attempt, provider_id)
    if sequence is not None and attempt.last_sequence is not None and sequence <= attempt.last_sequence:
        return OutcomeResult(False, "stale")
    attempt.last_status = status
    attempt.answered = attempt.answered or answered
    if sequence is not None:
        attempt.last_sequence = sequence
    return OutcomeResult(True, "progress")


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
    locked = lock_attempt(session, attempt_id)
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
    transitions.finish_attempt(attempt, call_status, now)
    metrics.CALL_ATTEMPTS.labels(call_status).inc()
    attempt.call_duration = duration
    attempt.provider_id = attempt.provider_id or provider_id
    if sequence is not None:
        attempt.last_sequence = max(sequence, attempt.last_sequence or 0)
    if attempt.attempted_at is None:
        attempt.attempted_at = now
    if not transitions.current_attempt_matches(event, attempt):
        return OutcomeResult(False, "stale: event has moved on")
    event.call_status = call_status
    event.call_duration = duration
    event.updated_at = now
    if call_status == CallStatus.COMPLETED:
        transitions.finish(event, EventStatus.COMPLETED, now)
    elif event.cancel_requested:
        transitions.finish(event, EventStatus.CANCELED, now, f"canceled by request; last call status: {call_status}")
    elif event.retry_count < event.max_retries_client_errors:
        interval = timedelta(seconds=event.retry_interval_secs or 0)
        at = next_retry_time(session, event, now + interval)
        transitions.retry_later(event, at, now=now, call_status=call_status)
    else:
        error = BUDGET_EXHAUSTED.format(n=attempt.attempt_number, status=call_status)
        transitions.finish(event, EventStatus.FAILED, now, error)
    return OutcomeResult(True, call_status)


def next_retry_time(session: Session, event: ScheduledEvent, earliest: datetime) -> datetime:
    """When a retry may run: ``max(earliest, next window opening)`` (held when no opening can be found)."""
    context = window_context(session, event)
    if context is None:
        return earliest
    ruleset, recipient = context
    if ruleset is None or not recipient.zones:
        return windows.HOLD_UNTIL
    return windows.next_opening(earliest, recipient, ruleset) or windows.HOLD_UNTIL


def apply_sms_outcome(
    session: Session, attempt_id: uuid.UUID, status: str, *, now: datetime, provider_id: str | None = None
) -> OutcomeResult:
    """A messaging status: ``delivered`` and ``delivery_unconfirmed`` complete, ``delivery_failed``,
    ``sending_failed`` and ``expired`` fail; ``sent`` (and queued, sending) waits for the final receipt.

    Telnyx's ``to[].status`` values (``queued sending sent expired sending_failed delivery_unconfirmed delivered
    delivery_failed``): the official SDK's ``telnyx/types/outbound_message_payload.py`` (4.189.0), ``To.status``.
    ``expired`` is a final status (the carrier gave up within the validity period): the message never arrived.
    ``delivery_unconfirmed`` is final too (the carrier sent no receipt): reached, as far as anyone can tell, with
    the outcome recorded so a report can tell it from ``delivered``.
    """
    locked = lock_attempt(session, attempt_id)
    if locked is None:
        return OutcomeResult(False, "unknown attempt")
    result = apply_sms_outcome_locked(*locked, status, now=now, provider_id=provider_id)
    session.flush()
    return result


def apply_sms_outcome_locked(
    attempt: CallAttempt, event: ScheduledEvent, status: str, *, now: datetime, provider_id: str | None = None
) -> OutcomeResult:
    """``apply_sms_outcome`` on an attempt whose event the caller has locked (``lock_attempts``); not flushed.

    A receipt proves the message exists (``transitions.placed``): the reconciler settles it as a sent message instead of
    failing it closed.
    """
    attempt.provider_id = attempt.provider_id or provider_id
    if attempt.call_status is not None:
        return OutcomeResult(False, "duplicate")
    transitions.placed(attempt, provider_id)
    if status not in SMS_SUCCESS | SMS_FAILURE or status == MessageStatus.SENT:
        if attempt.last_status not in SMS_SUCCESS | SMS_FAILURE:
            attempt.last_status = status
        return OutcomeResult(True, "progress")
    transitions.finish_attempt(attempt, status, now)
    attempt.outcome = Outcome(status)
    metrics.count_outcome(Channel.SMS_CHAT, status, None)
    if not transitions.current_attempt_matches(event, attempt):
        return OutcomeResult(False, "stale: event has moved on")
    if status in SMS_SUCCESS:
        transitions.finish(event, EventStatus.COMPLETED, now)
    else:
        transitions.finish(event, EventStatus.FAILED, now, f"message {status}")
    return OutcomeResult(True, status)
