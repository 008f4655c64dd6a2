"""Scheduled events on the wire: Telnyx's shapes (``/v2``, checked against the official SDK's models) and the
campaign view of the same events (``/v1``, with the engine's ``canceled``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictInt, StrictStr

from campaigns.states import AnsweredBy, CallStatus, Channel, EventStatus, MachineDetection, VoicemailAction
from worker.api.schemas.common import PageMeta, RequestBody, ResponseBody, Timestamp, Uuid

TelnyxEventStatus = Literal[EventStatus.PENDING, EventStatus.IN_PROGRESS, EventStatus.COMPLETED, EventStatus.FAILED]
"""Telnyx's four (``campaigns.states.TELNYX_EVENT_STATUSES``; the SDK's ``EventStatus``)."""
TelnyxCallStatus = Literal[
    CallStatus.BUSY,
    CallStatus.CANCELED,
    CallStatus.NO_ANSWER,
    CallStatus.RINGING,
    CallStatus.COMPLETED,
    CallStatus.FAILED,
    CallStatus.IN_PROGRESS,
]
"""Telnyx's ``call_status`` values (``campaigns.events.TELNYX_CALL_STATUSES``; the SDK's ``CallAttempt``)."""
AnsweredByValue = Literal[
    AnsweredBy.HUMAN, AnsweredBy.MACHINE, AnsweredBy.FAX, AnsweredBy.SCREENING, AnsweredBy.UNKNOWN
]
DetectionMode = Literal[MachineDetection.DISABLED, MachineDetection.DETECT, MachineDetection.DETECT_PREMIUM]
VoicemailActionValue = Literal[VoicemailAction.RETRY, VoicemailAction.COMPLETE]
PolicyOutcome = Literal["busy", "no-answer", "voicemail", "screened", "failed", "canceled"]
"""``campaigns.states.RETRY_POLICY_OUTCOMES``."""
SipRegion = Literal["US", "Europe", "Canada", "Australia", "Middle East"]
MetadataValue = StrictStr | StrictInt | StrictBool


class CallAttempt(ResponseBody):
    """One dispatch of a phone-call event."""

    attempt_number: int
    attempted_at: Timestamp
    call_status: TelnyxCallStatus
    call_duration: int | None = Field(description="Duration of the call in seconds")
    telnyx_call_control_id: str | None
    outcome: str | None = Field(
        description="Extension: the engine's classification of the finished attempt (answered, voicemail, "
        "screened, busy, no-answer, failed, canceled, channel_limited, provider_rejected, not_placed: the "
        "provider's records show it never arrived, so the event was dialled again, unknown: nobody reported the "
        "outcome, so the call is never re-dialled); null while the attempt runs."
    )
    answered_by: AnsweredByValue | None = Field(
        description="Extension: who answered, as answering-machine detection reported it; null when it did not run"
    )
    conversation_id: str | None = Field(description="Extension: the Telnyx conversation of this call")


class OutcomeRetry(RequestBody):
    """One outcome's retry budget in a ``retry_policy``: Telnyx's rules (0-10 retries, 60-86400 s)."""

    max_retries: int = Field(ge=0, le=10)
    retry_interval_secs: int | None = Field(None, ge=60, le=86400)


class _Event(ResponseBody):
    scheduled_event_id: Uuid
    assistant_id: str
    telnyx_end_user_target: str
    telnyx_agent_target: str
    scheduled_at_fixed_datetime: Timestamp
    conversation_id: str | None
    conversation_metadata: dict[str, MetadataValue]
    dynamic_variables: dict[str, str]
    created_at: Timestamp
    errors: list[str]
    retry_count: int
    campaign_id: Uuid | None = Field(description="Extension: the campaign the event belongs to")
    ruleset: str = Field(description="Extension: the calling-window ruleset")
    timezone: str | None = Field(description="Extension: the recipient's IANA time zone, where known")
    deferred_reason: str | None = Field(description="Extension: why the event waits past its scheduled time")
    deferred_until: Timestamp | None


class _PhoneCall(_Event):
    telnyx_conversation_channel: Literal[Channel.PHONE_CALL]
    call_status: TelnyxCallStatus | None
    call_duration: int | None
    call_attempts: list[CallAttempt]
    call_settings: dict[str, Any] | None
    dispatched_at: Timestamp | None
    max_retries_client_errors: int
    retry_interval_secs: int | None
    retry_attempts: int
    answering_machine_detection: DetectionMode = Field(description="Extension: answering-machine detection")
    voicemail_action: VoicemailActionValue = Field(description="Extension: what a voicemail leads to")
    retry_policy: dict[PolicyOutcome, OutcomeRetry] | None = Field(description="Extension: per-outcome retries")
    outcome_retries: dict[str, int] = Field(description="Extension: retries spent so far, per outcome")
    free_attempts: int = Field(description="Extension: attempts that spent no budget (the account's channel limit)")


class _Sms(_Event):
    telnyx_conversation_channel: Literal[Channel.SMS_CHAT]
    text: str | None


class PhoneCallEvent(_PhoneCall):
    status: TelnyxEventStatus


class SmsEvent(_Sms):
    status: TelnyxEventStatus


class CampaignPhoneCallEvent(_PhoneCall):
    status: EventStatus


class CampaignSmsEvent(_Sms):
    status: EventStatus


ScheduledEvent = Annotated[PhoneCallEvent | SmsEvent, Field(discriminator="telnyx_conversation_channel")]
"""An event on ``/v2``: its channel says which shape it has, as in the Telnyx SDK."""
CampaignEvent = Annotated[CampaignPhoneCallEvent | CampaignSmsEvent, Field(discriminator="telnyx_conversation_channel")]
"""An event on ``/v1``: the ``/v2`` shape with the engine's status (``canceled`` included)."""


class ScheduledEventPage(ResponseBody):
    data: list[ScheduledEvent]
    meta: PageMeta


class CampaignEventPage(ResponseBody):
    data: list[CampaignEvent]
    meta: PageMeta


class CallSettings(RequestBody):
    """Per-call telephony overrides (phone calls only); other keys are kept as given."""

    model_config = ConfigDict(extra="allow")

    sip_region: SipRegion | None = None


class ScheduledEventCreate(RequestBody):
    """Telnyx's create-event fields, plus the ``ruleset`` and ``timezone`` extensions."""

    telnyx_conversation_channel: Channel
    telnyx_end_user_target: str = Field(description="The recipient: E.164 (+15551234567) or a SIP URI")
    telnyx_agent_target: str = Field(description="The number the assistant calls or texts from")
    scheduled_at_fixed_datetime: Timestamp = Field(description="ISO 8601; must be in the future")
    text: str | None = Field(None, description="The message body: required for sms_chat")
    conversation_metadata: dict[str, MetadataValue] | None = None
    dynamic_variables: dict[str, str] | None = None
    max_retries_client_errors: int | None = Field(None, ge=0, le=10, description="phone_call only")
    retry_interval_secs: int | None = Field(
        None, ge=60, le=86400, description="Required when max_retries_client_errors > 0; phone_call only"
    )
    call_settings: CallSettings | None = None
    ruleset: str = Field("none", description="Extension: the calling-window ruleset (CAMPAIGNS_DEFAULT_RULESET)")
    timezone: str | None = Field(None, description="Extension: the recipient's IANA time zone")
    answering_machine_detection: DetectionMode | None = Field(
        None, description="Extension, phone_call only: disabled (default, Telnyx's behaviour), detect, detect_premium"
    )
    voicemail_action: VoicemailActionValue | None = Field(
        None, description="Extension, phone_call only: retry (default) or complete (a voicemail counts as reached)"
    )
    retry_policy: dict[PolicyOutcome, OutcomeRetry] | None = Field(
        None,
        description="Extension, phone_call only: a retry budget per outcome; outcomes not named use "
        "max_retries_client_errors / retry_interval_secs",
    )
