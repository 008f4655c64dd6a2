"""Every status transition of an event and of its attempts, in one place (oban's ``complete_job`` /
``snooze_job`` style): the only writer of ``ScheduledEvent.status`` and ``CallAttempt.state`` in the ORM code.

Each function changes loaded objects whose event row the caller has locked, and counts the transition in the
metrics where one is defined; the caller flushes. Nothing here reads the database.

Set-based statements write a status where doing it row by row through the unit of work cost too much; they stay
where they are, and are listed here so this module remains the map of every transition:

- ``claim.claim_due_events``: events ``pending → in_progress`` for a whole claim batch (one ``UPDATE … FOR UPDATE
  SKIP LOCKED``), before the checks move some of them on through the functions below;
- ``dispatch.mark_sending``: one attempt ``claimed → sending`` right before its request leaves (``_MARK_SENDING``);
- ``dispatch.record_dispatched_many``: attempts ``sending | unknown → sent`` for a batch (``_RECORD_DISPATCHED``);
- ``reconcile._settle_expired``: attempts that never left withdrawn for a batch (one ``DELETE``, as
  ``withdraw_attempt`` does for one);
- outside this package: ``campaigns.campaign.cancel`` (a campaign's pending events ``→ canceled``, one
  ``UPDATE``) and the importers' bulk inserts (new events are ``pending``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from campaigns import logs, metrics
from campaigns.models import CallAttempt, ScheduledEvent
from campaigns.states import AttemptState, CallStatus, Channel, EventStatus, Outcome

log = logging.getLogger(__name__)

CANCELED_BEFORE_DISPATCH = "canceled by request before dispatch"


# --- events -----------------------------------------------------------------------------------------------


def finish(event: ScheduledEvent, status: EventStatus, now: datetime, error: str | None = None) -> None:
    """A terminal status (``completed``, ``failed`` or ``canceled``), with an ``errors`` entry saying why."""
    metrics.count_finished(event.telnyx_conversation_channel, status)
    event.status = status
    event.lease_expires_at = None
    event.updated_at = now
    if error:
        event.errors = [*event.errors, error]


def back_to_pending(event: ScheduledEvent, at: datetime, *, now: datetime, reason: str | None = None) -> None:
    """Pending again, due at ``at``, with no lease; ``reason`` (a deferral: why and until when) is shown until
    the next claim clears it."""
    event.status = EventStatus.PENDING
    event.scheduled_at_fixed_datetime = at
    event.lease_expires_at = None
    event.updated_at = now
    event.deferred_reason = reason
    event.deferred_until = at if reason is not None else None


def defer(event: ScheduledEvent, until: datetime, reason: str, kind: str, *, now: datetime) -> None:
    """Back to ``pending`` until ``until``, saying why; no retry budget is consumed. ``kind`` is the bounded
    metric label (``window``, ``held``, ``pacing``, ``frequency_cap``)."""
    back_to_pending(event, until, now=now, reason=reason)
    metrics.DEFERRALS.labels(kind).inc()
    log.info("event deferred", extra={**logs.event_fields(event), "until": until.isoformat()})


def release(event: ScheduledEvent, at: datetime, *, now: datetime, reason: str | None = None) -> None:
    """Its attempt never reached the provider and was withdrawn: pending again at ``at`` (budget intact), or
    ``canceled`` when a cancel was requested meanwhile."""
    if event.cancel_requested:
        finish(event, EventStatus.CANCELED, now, CANCELED_BEFORE_DISPATCH)
    else:
        back_to_pending(event, at, now=now, reason=reason)


def retry_later(
    event: ScheduledEvent, at: datetime, *, now: datetime, call_status: str, outcome: str | None = None
) -> None:
    """A retryable call status within budget: one more attempt, at ``at``; ``outcome`` spends its own budget
    (``outcome_retries``), ``retry_count`` counts every retry spent."""
    event.retry_count += 1
    if outcome is not None:
        spent = dict(event.outcome_retries or {})  # a new dict: JSONB changes are seen on assignment only
        spent[outcome] = spent.get(outcome, 0) + 1
        event.outcome_retries = spent
    back_to_pending(event, at, now=now)
    metrics.RETRIES_SCHEDULED.labels(call_status).inc()
    log.info("retry scheduled", extra={**logs.event_fields(event), "at": at.isoformat()})


def retry_free(event: ScheduledEvent, at: datetime, *, now: datetime, reason: str) -> None:
    """An attempt that was the account's doing (``channel_limited``): another attempt at ``at`` that spends no
    budget (``free_attempts`` keeps the attempt numbers apart), with ``deferred_reason`` saying why."""
    event.free_attempts += 1
    back_to_pending(event, at, now=now, reason=reason)
    metrics.DEFERRALS.labels("pacing").inc()
    log.info("event refused for the channel limit", extra={**logs.event_fields(event), "at": at.isoformat()})


def current_attempt_number(event: ScheduledEvent) -> int:
    """The number of the event's current (or next) attempt: every budgeted retry and every free attempt before it."""
    return event.retry_count + event.free_attempts + 1


def reopen_unknown(attempt: CallAttempt, event: ScheduledEvent, now: datetime) -> bool:
    """A real result arrived for an attempt closed as ``unknown`` (late truth wins): when the event is still where
    that attempt left it (failed closed, no later attempt), take back the failure so the result can decide.
    ``False`` when the event has moved on."""
    if event.status != EventStatus.FAILED or attempt.attempt_number != current_attempt_number(event):
        return False
    marker = f"attempt {attempt.attempt_number}: outcome unknown"
    if not any(e.startswith(marker) for e in event.errors):
        return False
    event.errors = [e for e in event.errors if not e.startswith(marker)]
    metrics.count_reopened(event.telnyx_conversation_channel, event.status)  # it was counted finished
    event.status = EventStatus.IN_PROGRESS
    event.updated_at = now
    attempt.call_status = None
    attempt.outcome = None
    attempt.error = None  # the reconciler's "no terminal status arrived" is no longer true
    attempt.state = AttemptState.SENT
    log.info("late result replaces an unknown outcome", extra=logs.event_fields(event))
    return True


def reopen_completed(event: ScheduledEvent, now: datetime) -> None:
    """A detection result that arrived after the hangup says the "answer" was a machine: take back the completion
    so the true outcome can decide (``outcomes.record_detection_locked`` checked the attempt is the current one)."""
    metrics.count_reopened(event.telnyx_conversation_channel, event.status)
    event.status = EventStatus.IN_PROGRESS
    event.updated_at = now
    log.info("late detection result reopens a completed event", extra=logs.event_fields(event))


def suppress(event: ScheduledEvent, reason: str, kind: str, *, now: datetime) -> None:
    """Failed without a provider request: the recipient may not be contacted (``kind``: the metric label)."""
    finish(event, EventStatus.FAILED, now, reason)
    metrics.SUPPRESSIONS.labels(kind).inc()
    log.info("event suppressed", extra={**logs.event_fields(event), "reason": reason})


def current_attempt_matches(event: ScheduledEvent, attempt: CallAttempt) -> bool:
    """Only the event's current attempt may move the event; an older one is stale."""
    return event.status == EventStatus.IN_PROGRESS and attempt.attempt_number == current_attempt_number(event)


# --- attempts ---------------------------------------------------------------------------------------------


def withdraw_attempt(session: Session, attempt: CallAttempt, event: ScheduledEvent) -> None:
    """Remove an attempt that never reached the provider (it is not part of the audit trail)."""
    session.execute(delete(CallAttempt).where(CallAttempt.id == attempt.id))
    session.expire(event, ["attempts"])


def placed(attempt: CallAttempt, provider_id: str | None) -> None:
    """A callback about the attempt proves the provider placed it: one still ``sending`` (the worker's answer not
    recorded yet, or the worker died) or ``unknown`` (the request timed out) becomes ``sent``, with the provider's
    id, as ``dispatch.record_dispatched_many`` would have made it."""
    if attempt.state in (AttemptState.SENDING, AttemptState.UNKNOWN):
        attempt.state = AttemptState.SENT
    attempt.provider_id = attempt.provider_id or provider_id


def outcome_unknown(attempt: CallAttempt, reason: str) -> None:
    """The request may have been placed (timed out after sending): never re-sent; a callback or the reconciler
    settles it."""
    attempt.state = AttemptState.UNKNOWN
    attempt.error = reason


def finish_attempt(attempt: CallAttempt, status: str, now: datetime) -> None:
    """The attempt's final status: a call status, or an SMS delivery status (hence ``str``)."""
    attempt.call_status = status
    attempt.state = AttemptState.FINISHED
    attempt.finished_at = now


def reject(attempt: CallAttempt, event: ScheduledEvent, reason: str, now: datetime) -> None:
    """The provider rejected the request for good: the attempt failed and the event fails with the error."""
    finish_attempt(attempt, CallStatus.FAILED, now)
    attempt.error = reason
    if event.telnyx_conversation_channel == Channel.PHONE_CALL:
        attempt.outcome = Outcome.FAILED
        metrics.CALL_ATTEMPTS.labels(CallStatus.FAILED).inc()
        metrics.count_outcome(Channel.PHONE_CALL, Outcome.FAILED, None)
    event.call_status = CallStatus.FAILED if event.telnyx_conversation_channel == Channel.PHONE_CALL else None
    finish(event, EventStatus.FAILED, now, reason)


def provider_refused(attempt: CallAttempt, event: ScheduledEvent, detail: str, now: datetime) -> None:
    """The provider refused the account, not the recipient (a rejected key, a missing connection or profile):
    the attempt stays on the record with outcome ``provider_rejected`` and no call status (no call or message
    was created), and spends no budget (``free_attempts``, as a channel-limited attempt); the caller parks the
    event until the hold closes."""
    _finish_free(attempt, event, Outcome.PROVIDER_REJECTED, detail, now)


def not_placed(attempt: CallAttempt, event: ScheduledEvent, detail: str, now: datetime) -> None:
    """An attempt whose outcome was unknown never reached the provider, by the provider's own records (its list
    shows nothing, no callback named it): it stays on the record as ``not_placed`` with no call status, spends no
    budget (``free_attempts``), and the event is pending again now (``canceled`` if a cancel was asked)."""
    _finish_free(attempt, event, Outcome.NOT_PLACED, detail, now)
    release(event, now, now=now)
    log.info("attempt not placed, by the provider's records: dialled again", extra=logs.event_fields(event))


def _finish_free(attempt: CallAttempt, event: ScheduledEvent, outcome: Outcome, detail: str, now: datetime) -> None:
    """Finished with ``outcome`` and no call status (nothing was created), ``detail`` as its error; no budget."""
    attempt.state = AttemptState.FINISHED
    attempt.finished_at = now
    attempt.error = detail
    attempt.outcome = outcome
    metrics.count_outcome(event.telnyx_conversation_channel, outcome, None)
    event.free_attempts += 1


def fail_unknown(attempt: CallAttempt, event: ScheduledEvent, now: datetime, why: str) -> None:
    """Close the attempt as unknown and fail the event closed: it may have rung, so it is never re-dialled."""
    finish_attempt(attempt, CallStatus.UNKNOWN, now)
    if event.telnyx_conversation_channel == Channel.PHONE_CALL:
        attempt.outcome = Outcome.UNKNOWN
        metrics.CALL_ATTEMPTS.labels(CallStatus.UNKNOWN).inc()
        metrics.count_outcome(Channel.PHONE_CALL, Outcome.UNKNOWN, attempt.answered_by)
    attempt.error = attempt.error or why
    finish(
        event,
        EventStatus.FAILED,
        now,
        f"attempt {attempt.attempt_number}: outcome unknown ({why}); not re-dialled to avoid a double call",
    )
