"""Every status the engine stores or reads, in one place.

The values are the wire and column values (Telnyx's where Telnyx defines them), so a member compares equal to the
string it stands for: ``EventStatus.PENDING == "pending"``. Sets of statuses (terminal, retryable, …) live here
too and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class EventStatus(StrEnum):
    """A scheduled event's status: Telnyx's four plus the extension ``canceled``."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


EVENT_STATUSES: Final = tuple(s.value for s in EventStatus)
TERMINAL_EVENT_STATUSES: Final = frozenset({EventStatus.COMPLETED, EventStatus.FAILED, EventStatus.CANCELED})
TELNYX_EVENT_STATUSES: Final = frozenset(
    {EventStatus.PENDING, EventStatus.IN_PROGRESS, EventStatus.COMPLETED, EventStatus.FAILED}
)
"""The four statuses Telnyx's API (and its SDK's strict parsing) knows."""


class AttemptState(StrEnum):
    """Dispatch state of one attempt, separate from its call status."""

    CLAIMED = "claimed"
    """Created by the scheduler; nothing has been sent yet (safe to withdraw)."""
    SENDING = "sending"
    """Committed right before the provider request; the request may have reached the provider."""
    SENT = "sent"
    """The provider accepted it and we know its id."""
    UNKNOWN = "unknown"
    """The request timed out after sending; never re-sent."""
    FINISHED = "finished"
    """A terminal outcome is recorded."""


ATTEMPT_STATES: Final = tuple(s.value for s in AttemptState)


class Channel(StrEnum):
    """``telnyx_conversation_channel``."""

    PHONE_CALL = "phone_call"
    SMS_CHAT = "sms_chat"


CHANNELS: Final = tuple(s.value for s in Channel)


class CallStatus(StrEnum):
    """Telnyx's ``CallStatus`` values (TeXML status callbacks), plus ``unknown`` for an outcome nobody reported."""

    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"
    UNKNOWN = "unknown"


RETRYABLE_CALL_STATUSES: Final = frozenset(
    {CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED, CallStatus.CANCELED}
)
"""Terminal call statuses that spend the client-error retry budget."""
TERMINAL_CALL_STATUSES: Final = RETRYABLE_CALL_STATUSES | {CallStatus.COMPLETED}
PROGRESS_CALL_STATUSES: Final = frozenset(
    {CallStatus.INITIATED, CallStatus.RINGING, CallStatus.IN_PROGRESS, CallStatus.QUEUED}
)
RECORDED_CALL_STATUSES: Final = ("completed", "busy", "no-answer", "failed", "canceled", "unknown")
"""Every final call status an attempt can carry (metric label values)."""


class MessageStatus(StrEnum):
    """Telnyx messaging delivery statuses (``message.sent`` / ``message.finalized`` ``to[].status``)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    DELIVERY_UNCONFIRMED = "delivery_unconfirmed"
    DELIVERY_FAILED = "delivery_failed"
    SENDING_FAILED = "sending_failed"
    EXPIRED = "expired"


SMS_SUCCESS: Final = frozenset({MessageStatus.DELIVERED, MessageStatus.SENT, MessageStatus.DELIVERY_UNCONFIRMED})
SMS_FAILURE: Final = frozenset({MessageStatus.DELIVERY_FAILED, MessageStatus.SENDING_FAILED, MessageStatus.EXPIRED})
"""Final statuses that fail the event: ``expired`` is final too (``telnyx/types/outbound_message_payload.py``)."""


class CampaignStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELED = "canceled"
    COMPLETED = "completed"


CAMPAIGN_STATUSES: Final = tuple(s.value for s in CampaignStatus)


class ImportStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


IMPORT_STATUSES: Final = tuple(s.value for s in ImportStatus)


class Outcome(StrEnum):
    """The engine's classification of one attempt (extension field ``outcome``); ``call_status`` keeps Telnyx's.

    Calls: what happened on the network, including the cases Telnyx reports as a bare ``failed`` or
    ``completed`` (a voicemail, the account's channel limit). Messages: the final delivery status.
    """

    ANSWERED = "answered"
    VOICEMAIL = "voicemail"
    SCREENED = "screened"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"
    CHANNEL_LIMITED = "channel_limited"
    """Refused for the account's own concurrent-channel limit (SIP 403 D1, or HTTP 429 90103): not the recipient."""
    PROVIDER_REJECTED = "provider_rejected"
    """The provider refused the account (401/403, a missing connection or profile): not the recipient."""
    NOT_PLACED = "not_placed"
    """An attempt whose outcome was unknown (its worker died, or its request timed out) that the provider's own
    records show never arrived: its list showed no such call or message for ``unknown_lookup_secs`` and no
    callback named it. Nobody was contacted: dialled again, no budget spent."""
    UNKNOWN = "unknown"
    DELIVERED = "delivered"
    SENT = "sent"
    DELIVERY_UNCONFIRMED = "delivery_unconfirmed"
    DELIVERY_FAILED = "delivery_failed"
    SENDING_FAILED = "sending_failed"
    EXPIRED = "expired"


CALL_OUTCOMES: Final = (
    "answered", "voicemail", "screened", "busy", "no-answer", "failed", "canceled", "channel_limited",
    "provider_rejected", "not_placed", "unknown",
)  # fmt: skip
RETRY_POLICY_OUTCOMES: Final = ("busy", "no-answer", "voicemail", "screened", "failed", "canceled")
"""The outcomes a ``retry_policy`` may name: the recipient's doing, so each spends its own retry budget."""
FREE_OUTCOMES: Final = frozenset({Outcome.CHANNEL_LIMITED, Outcome.PROVIDER_REJECTED, Outcome.NOT_PLACED})
"""Outcomes that are the account's doing: the event goes back to ``pending`` and no budget is consumed."""


class AnsweredBy(StrEnum):
    """Who picked up, as answering-machine detection reports it (extension field ``answered_by``)."""

    HUMAN = "human"
    MACHINE = "machine"
    FAX = "fax"
    SCREENING = "screening"
    UNKNOWN = "unknown"


ANSWERED_BY: Final = tuple(s.value for s in AnsweredBy)


class MachineDetection(StrEnum):
    """``answering_machine_detection``: ``disabled`` is Telnyx's behaviour (the default on ``/v2``)."""

    DISABLED = "disabled"
    DETECT = "detect"
    DETECT_PREMIUM = "detect_premium"


MACHINE_DETECTION_MODES: Final = tuple(s.value for s in MachineDetection)


class VoicemailAction(StrEnum):
    """What a voicemail leads to: another attempt (``retry``) or the contact counts as reached (``complete``)."""

    RETRY = "retry"
    COMPLETE = "complete"


VOICEMAIL_ACTIONS: Final = tuple(s.value for s in VoicemailAction)
