"""The wire shapes of an event: Telnyx's for ``/v2`` (its four statuses, its call statuses), the engine's for
``/v1``."""

from __future__ import annotations

from typing import Any, Final

from campaigns.clock import iso
from campaigns.models import CallAttempt, ScheduledEvent
from campaigns.states import TERMINAL_CALL_STATUSES, AttemptState, CallStatus, Channel, EventStatus

TELNYX_CALL_STATUSES: Final = frozenset(
    {
        CallStatus.RINGING,
        CallStatus.IN_PROGRESS,
        CallStatus.COMPLETED,
        CallStatus.BUSY,
        CallStatus.NO_ANSWER,
        CallStatus.FAILED,
        CallStatus.CANCELED,
    }
)
"""The ``call_status`` values of Telnyx's scheduled events (the SDK's ``CallAttempt.call_status``: "busy, canceled,
no-answer, ringing, completed, failed, in-progress"); the engine also knows ``queued``, ``initiated``, ``unknown``."""


def telnyx_call_status(value: str) -> str:
    """An attempt's status in Telnyx's terms: its own where Telnyx has it; a call placed but not yet reported on
    (``queued``, ``initiated``) is ``ringing``; a call whose outcome nobody reported (``unknown``: its event failed
    closed) is ``failed``. The engine's word stays in the attempt's ``outcome``."""
    if value in TELNYX_CALL_STATUSES:
        return value
    return CallStatus.FAILED if value in TERMINAL_CALL_STATUSES or value == CallStatus.UNKNOWN else CallStatus.RINGING


def _attempt(attempt: CallAttempt) -> dict[str, Any]:
    # A finished attempt with no call status created no call (``provider_rejected``): ``failed`` in Telnyx's terms.
    unplaced = CallStatus.FAILED if attempt.state == AttemptState.FINISHED else CallStatus.QUEUED
    engine_status = attempt.call_status or attempt.last_status or unplaced
    return {
        "attempt_number": attempt.attempt_number,
        "attempted_at": iso(attempt.attempted_at),
        "call_status": telnyx_call_status(engine_status),
        "call_duration": attempt.call_duration,
        "telnyx_call_control_id": attempt.provider_id,
        # Extensions: the engine's classification (campaigns.states.Outcome: answered, voicemail, screened, busy,
        # …; null while the attempt runs), who answered where detection ran, and the conversation.
        "outcome": attempt.outcome,
        "answered_by": attempt.answered_by,
        "conversation_id": attempt.conversation_id,
    }


def _wire(event: ScheduledEvent, status: str, errors: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scheduled_event_id": str(event.id),
        "assistant_id": event.assistant_id,
        "telnyx_conversation_channel": event.telnyx_conversation_channel,
        "telnyx_end_user_target": event.telnyx_end_user_target,
        "telnyx_agent_target": event.telnyx_agent_target,
        "scheduled_at_fixed_datetime": iso(event.scheduled_at_fixed_datetime),
        "status": status,
        "conversation_id": event.conversation_id,
        "conversation_metadata": event.conversation_metadata,
        "dynamic_variables": event.dynamic_variables,
        "created_at": iso(event.created_at),
        "errors": errors,
        "retry_count": event.retry_count,
        # Extensions.
        "campaign_id": str(event.campaign_id) if event.campaign_id else None,
        "ruleset": event.ruleset,
        "timezone": event.timezone,
        "deferred_reason": event.deferred_reason,
        "deferred_until": iso(event.deferred_until),
    }
    if event.telnyx_conversation_channel == Channel.SMS_CHAT:
        # No dispatched_at here: the Telnyx SDK tells SMS from call events by their fields.
        body["text"] = event.text
        return body
    attempted = [a for a in event.attempts if a.attempted_at is not None]
    body.update(
        {
            "call_status": event.call_status if event.call_status in TELNYX_CALL_STATUSES else None,
            "call_duration": event.call_duration,
            "call_attempts": [_attempt(a) for a in attempted],
            "call_settings": event.call_settings,
            "dispatched_at": iso(event.dispatched_at),
            "max_retries_client_errors": event.max_retries_client_errors,
            "retry_interval_secs": event.retry_interval_secs,
            "retry_attempts": len(attempted),
            # Extensions (DESIGN.md §2.5).
            "answering_machine_detection": event.answering_machine_detection,
            "voicemail_action": event.voicemail_action,
            "retry_policy": event.retry_policy,
            "outcome_retries": event.outcome_retries,
            "free_attempts": event.free_attempts,
        }
    )
    return body


def serialize_event(event: ScheduledEvent) -> dict[str, Any]:
    """The event for the operator's ``/v1`` API: the Telnyx fields with the engine's statuses (``canceled``)."""
    return _wire(event, event.status, list(event.errors))


def serialize_telnyx_event(event: ScheduledEvent) -> dict[str, Any]:
    """The event as the Telnyx API returns it (plus the extension fields), with one of Telnyx's four statuses.

    Telnyx has no ``canceled`` (the SDK's strict parsing rejects it, and then takes an SMS event for a phone
    call): an event canceled with its campaign reads ``failed``, with an ``errors`` entry that says so.
    """
    if event.status != EventStatus.CANCELED:
        return serialize_event(event)
    why = f"canceled with campaign {event.campaign_id} by an operator" if event.campaign_id else "canceled by request"
    return _wire(event, EventStatus.FAILED, [*event.errors, why])
