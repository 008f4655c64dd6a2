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
from typing import Any, Final

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
    AnsweredBy,
    CallStatus,
    Channel,
    EventStatus,
    MessageStatus,
    Outcome,
    VoicemailAction,
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
    answered_by: str | None = None,
) -> OutcomeResult:
    """A non-terminal callback (initiated, ringing, answered): recorded on the attempt, never moves back."""
    locked = lock_attempt(session, attempt_id)
    if locked is None:
        return OutcomeResult(False, "unknown attempt")
    result = apply_progress_locked(
        *locked, status, sequence=sequence, answered=answered, now=now, provider_id=provider_id, answered_by=answered_by
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
    answered_by: str | None = None,
) -> OutcomeResult:
    """``apply_progress`` on an attempt whose event the caller has locked (``lock_attempts``); not flushed.

    The call exists (``transitions.placed``): the reconciler asks the provider about it when its lease ends instead of
    failing it closed.
    """
    if attempt.call_status is not None:
        return OutcomeResult(False, "attempt already finished")
    transitions.placed(attempt, provider_id)
    if answered_by is not None:
        note_detection(attempt, answered_by)  # TeXML's synchronous AMD: AnsweredBy on the answered callback
    if sequence is not None and attempt.last_sequence is not None and sequence <= attempt.last_sequence:
        return OutcomeResult(False, "stale")
    attempt.last_status = status
    attempt.answered = attempt.answered or answered
    if answered and attempt.answered_at is None:
        attempt.answered_at = now  # the export's answer time (an out-of-order duplicate keeps the first)
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
    answered_by: str | None = None,
    channel_limited: bool = False,
) -> OutcomeResult:
    """A terminal call status: finish the attempt, then complete, retry or fail the event (DESIGN.md §2.4)."""
    if call_status not in TERMINAL_CALL_STATUSES:
        raise ValueError(f"not a terminal call status: {call_status}")
    locked = lock_attempt(session, attempt_id)
    if locked is None:
        return OutcomeResult(False, "unknown attempt")
    result = apply_call_outcome_locked(
        session,
        *locked,
        call_status,
        duration=duration,
        now=now,
        sequence=sequence,
        provider_id=provider_id,
        answered_by=answered_by,
        channel_limited=channel_limited,
    )
    session.flush()
    return result


def classify_call(call_status: str, answered_by: str | None, *, channel_limited: bool = False) -> Outcome:
    """The engine's outcome for a terminal call status and what detection said (``answered_by``).

    Telnyx reports a call picked up by voicemail, a call-screening assistant or a fax machine as ``completed``
    (only detection tells them apart), and a call refused for the account's own channel limit as ``failed``
    (only its SIP / error fields tell: ``callbacks.is_channel_limit``). A fax is not the recipient: ``failed``.
    """
    if channel_limited and call_status in (CallStatus.FAILED, CallStatus.BUSY, CallStatus.CANCELED):
        return Outcome.CHANNEL_LIMITED
    if call_status == CallStatus.COMPLETED:
        return _ANSWERED_AS.get(answered_by or "", Outcome.ANSWERED)
    return _STATUS_OUTCOME.get(call_status, Outcome.UNKNOWN)


_ANSWERED_AS: Final[dict[str, Outcome]] = {
    AnsweredBy.MACHINE: Outcome.VOICEMAIL,
    AnsweredBy.SCREENING: Outcome.SCREENED,
    AnsweredBy.FAX: Outcome.FAILED,
}
_STATUS_OUTCOME: Final[dict[str, Outcome]] = {
    CallStatus.BUSY: Outcome.BUSY,
    CallStatus.NO_ANSWER: Outcome.NO_ANSWER,
    CallStatus.FAILED: Outcome.FAILED,
    CallStatus.CANCELED: Outcome.CANCELED,
    CallStatus.UNKNOWN: Outcome.UNKNOWN,
}

CHANNEL_LIMIT_BACKOFF_SECS = 30
CHANNEL_LIMIT_BACKOFF_CAP_SECS = 300


def channel_limit_backoff(free_attempts: int) -> timedelta:
    """How long an event refused for the account's channel limit waits: 30 s * 2^n (n = attempts the account
    refused so far), capped at 5 minutes, so a saturated account is not hammered at full speed."""
    return timedelta(
        seconds=min(CHANNEL_LIMIT_BACKOFF_SECS * 2 ** min(free_attempts, 10), CHANNEL_LIMIT_BACKOFF_CAP_SECS)
    )


@dataclass(frozen=True)
class RetryBudget:
    """The budget an outcome spends: its ``retry_policy`` entry, else the Telnyx fields (shared by every outcome
    the policy does not name, so a plain Telnyx client sees Telnyx's behaviour)."""

    max_retries: int
    interval_secs: int
    spent: int
    from_policy: bool


def retry_budget(event: ScheduledEvent, outcome: str) -> RetryBudget:
    policy = event.retry_policy or {}
    spent_by = event.outcome_retries or {}
    entry = policy.get(outcome)
    if isinstance(entry, dict):
        return RetryBudget(
            int(entry.get("max_retries", 0)),
            int(entry.get("retry_interval_secs", event.retry_interval_secs or 0)),
            int(spent_by.get(outcome, 0)),
            True,
        )
    unnamed = sum(int(n) for name, n in spent_by.items() if name not in policy)
    return RetryBudget(event.max_retries_client_errors, event.retry_interval_secs or 0, unnamed, False)


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
    answered_by: str | None = None,
    channel_limited: bool = False,
) -> OutcomeResult:
    """``apply_call_outcome`` on an attempt whose event the caller has locked (``lock_attempts``); not flushed.

    A real result for an attempt that was closed as ``unknown`` (failed closed by the reconciler or a dispatch
    timeout) replaces the unknown, and the event takes the state it would have had, as long as the event is
    still where that attempt left it (late truth wins, DESIGN.md §2.5).
    """
    if call_status not in TERMINAL_CALL_STATUSES:
        raise ValueError(f"not a terminal call status: {call_status}")
    late_truth = False
    if attempt.call_status is not None:
        if not (attempt.call_status == CallStatus.UNKNOWN and call_status != CallStatus.UNKNOWN):
            return OutcomeResult(False, "duplicate")
        if not transitions.reopen_unknown(attempt, event, now):
            return OutcomeResult(False, "duplicate")
        late_truth = True
    if answered_by is not None:
        attempt.answered_by = answered_by
    outcome = classify_call(call_status, attempt.answered_by, channel_limited=channel_limited)
    transitions.finish_attempt(attempt, call_status, now)
    attempt.outcome = outcome
    metrics.CALL_ATTEMPTS.labels(call_status).inc()
    metrics.count_outcome(Channel.PHONE_CALL, outcome, attempt.answered_by)
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
    _decide(session, attempt, event, outcome, call_status, now)
    return OutcomeResult(True, f"late truth: {call_status}" if late_truth else call_status)


def reaches(outcome: str, event: ScheduledEvent) -> bool:
    """Whether the outcome counts as the recipient reached: an answer, or a voicemail / screening assistant when the
    event says so (``voicemail_action=complete``)."""
    return outcome == Outcome.ANSWERED or (
        outcome in (Outcome.VOICEMAIL, Outcome.SCREENED) and event.voicemail_action == VoicemailAction.COMPLETE
    )


def _decide(
    session: Session, attempt: CallAttempt, event: ScheduledEvent, outcome: Outcome, call_status: str, now: datetime
) -> None:
    """What the outcome does to the event: complete, cancel, a free retry, a budgeted retry, or fail."""
    if reaches(outcome, event):
        transitions.finish(event, EventStatus.COMPLETED, now)
        return
    if event.cancel_requested:
        transitions.finish(event, EventStatus.CANCELED, now, f"canceled by request; last call status: {call_status}")
        return
    if outcome == Outcome.CHANNEL_LIMITED:
        wait = channel_limit_backoff(event.free_attempts)
        reason = f"the account's channel limit was reached (attempt {attempt.attempt_number}); no retry budget used"
        transitions.retry_free(event, now + wait, now=now, reason=reason)
        return
    budget = retry_budget(event, outcome)
    if budget.spent < budget.max_retries:
        at = next_retry_time(session, event, now + timedelta(seconds=budget.interval_secs))
        transitions.retry_later(event, at, now=now, call_status=call_status, outcome=outcome)
        return
    if budget.from_policy:
        error = (
            f"retry budget for outcome {outcome} exhausted after {attempt.attempt_number} attempt(s) "
            f"(retry_policy {outcome}: max_retries {budget.max_retries}); last call status: {call_status}"
        )
    else:
        error = BUDGET_EXHAUSTED.format(n=attempt.attempt_number, status=call_status)
        if outcome != call_status:
            error += f"; outcome: {outcome}"
    transitions.finish(event, EventStatus.FAILED, now, error)


def note_detection(attempt: CallAttempt, answered_by: str) -> bool:
    """Keep what detection said on the attempt; a definite answer is not overwritten by a later ``unknown``
    (premium detection may send two results). ``False`` when the earlier result stays."""
    if attempt.answered_by not in (None, AnsweredBy.UNKNOWN) and answered_by == AnsweredBy.UNKNOWN:
        return False
    attempt.answered_by = answered_by
    return True


def record_detection_locked(
    session: Session, attempt: CallAttempt, event: ScheduledEvent, answered_by: str, *, now: datetime
) -> OutcomeResult:
    """What answering-machine detection said (``AnsweredBy`` / ``call.machine.*``), kept for the terminal status.

    Webhooks arrive out of order: when the terminal status came first and was taken for an answer, the
    detection result reclassifies the attempt, and an event it had completed takes the decision the true outcome
    calls for (a voicemail retried under ``voicemail_action=retry``), as long as no later attempt exists. The
    reverse (an event already retried for a voicemail that detection now calls human) is left as decided: its
    retry is already scheduled, and a second contact is what the policy asked for on the first answer.
    """
    if not note_detection(attempt, answered_by):
        return OutcomeResult(False, "detection: kept earlier result")
    if attempt.call_status != CallStatus.COMPLETED or attempt.outcome != Outcome.ANSWERED:
        return OutcomeResult(True, f"detection: {answered_by}")
    outcome = classify_call(CallStatus.COMPLETED, answered_by)
    if outcome == Outcome.ANSWERED:
        return OutcomeResult(True, f"detection: {answered_by}")
    attempt.outcome = outcome
    if (
        event.status != EventStatus.COMPLETED
        or attempt.attempt_number != transitions.current_attempt_number(event)
        or reaches(outcome, event)
    ):
        return OutcomeResult(True, f"detection after the end: {outcome}")
    transitions.reopen_completed(event, now)
    _decide(session, attempt, event, outcome, CallStatus.COMPLETED, now)
    return OutcomeResult(True, f"detection after the end: {outcome}, event {event.status}")


def record_conversation_locked(
    attempt: CallAttempt,
    event: ScheduledEvent,
    *,
    conversation_id: str | None,
    insights: dict[str, Any] | None,
) -> OutcomeResult:
    """``call.conversation.ended`` / ``call.conversation_insights.generated``: the conversation's id, on the attempt
    and on the event (Telnyx's ``conversation_id`` field), and the insight results on the attempt. Finished
    attempts included: these arrive after the hangup."""
    if conversation_id:
        attempt.conversation_id = conversation_id
        event.conversation_id = conversation_id
    if insights is not None:
        attempt.insights = insights
    return OutcomeResult(True, "conversation")


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
