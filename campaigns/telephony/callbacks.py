"""Telnyx callbacks parsed into one shape: TeXML status callbacks (form-encoded), Call Control and messaging
webhooks (JSON).

Parsing only: signatures are verified before (``campaigns.telephony.signatures``, in the HTTP layer), and
``campaigns.webhooks`` stores and applies what comes out of here.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from campaigns.states import TERMINAL_CALL_STATUSES, AnsweredBy, CallStatus, Channel
from campaigns.telephony.hints import read_hint

# Call Control hangup causes before an answer → TeXML-style statuses (telnyx-api.md §2, an inference).
HANGUP_TO_STATUS: Final[Mapping[str, CallStatus]] = {
    # Only an answered call ends this way, even when call.answered has not arrived (yet).
    "normal_clearing": CallStatus.COMPLETED,
    "time_limit": CallStatus.COMPLETED,
    "user_busy": CallStatus.BUSY,
    "no_answer": CallStatus.NO_ANSWER,
    "timeout": CallStatus.NO_ANSWER,
    "originator_cancel": CallStatus.CANCELED,
    "call_rejected": CallStatus.FAILED,
    "not_found": CallStatus.FAILED,
    "unspecified": CallStatus.FAILED,
}


def hangup_call_status(cause: str, *, answered: bool) -> CallStatus:
    """The call status a ``call.hangup`` stands for: ``completed`` once the call was answered, else its cause's."""
    return CallStatus.COMPLETED if answered else HANGUP_TO_STATUS.get(cause, CallStatus.FAILED)


# TeXML ``AnsweredBy`` (status callbacks and ``AsyncAmdStatusCallback``) → ``AnsweredBy``. TeXML follows the
# TwiML values with ``MachineDetection=DetectMessageEnd`` (``machine_start``, ``machine_end_beep``,
# ``machine_end_silence``, ``machine_end_other``, ``human``, ``fax``, ``unknown``); the official SDK's TeXML call
# resource (``telnyx/types/texml/accounts/call_resource.py``, 4.189.0) types ``answered_by`` as ``human | machine |
# not_sure``. Telnyx documents no TeXML value for the PremiumCallScreening result (developers.telnyx.com/docs/voice/
# programmable-voice/texml-answering-machine): ``screening`` / ``call_screening`` are read as screening, the Call
# Control result's word.
TEXML_ANSWERED_BY: Final[Mapping[str, AnsweredBy]] = {
    "human": AnsweredBy.HUMAN,
    "machine": AnsweredBy.MACHINE,
    "machine_start": AnsweredBy.MACHINE,
    "machine_end_beep": AnsweredBy.MACHINE,
    "machine_end_silence": AnsweredBy.MACHINE,
    "machine_end_other": AnsweredBy.MACHINE,
    "fax": AnsweredBy.FAX,
    "screening": AnsweredBy.SCREENING,
    "call_screening": AnsweredBy.SCREENING,
    "not_sure": AnsweredBy.UNKNOWN,
    "unknown": AnsweredBy.UNKNOWN,
}
# Call Control detection results → ``AnsweredBy``: ``call.machine.detection.ended`` ``payload.result`` ∈ human |
# machine | not_sure; ``call.machine.premium.detection.ended`` ∈ human_residence | human_business | machine |
# silence | fax_detected | not_sure; ``call.machine.premium.call_screening.detected`` = screening (the official SDK's
# ``telnyx/types/call_machine_detection_ended.py``, ``call_machine_premium_detection_ended.py``,
# ``call_machine_premium_call_screening_detected_webhook_event.py``, 4.189.0).
CALL_CONTROL_ANSWERED_BY: Final[Mapping[str, AnsweredBy]] = {
    "human": AnsweredBy.HUMAN,
    "human_residence": AnsweredBy.HUMAN,
    "human_business": AnsweredBy.HUMAN,
    "machine": AnsweredBy.MACHINE,
    "fax_detected": AnsweredBy.FAX,
    "screening": AnsweredBy.SCREENING,
    "silence": AnsweredBy.UNKNOWN,
    "not_sure": AnsweredBy.UNKNOWN,
}
DETECTION_EVENTS: Final = frozenset(
    {
        "call.machine.detection.ended",
        "call.machine.premium.detection.ended",
        "call.machine.premium.call_screening.detected",
    }
)
CONVERSATION_EVENTS: Final = frozenset({"call.conversation.ended", "call.conversation_insights.generated"})

CHANNEL_LIMIT_CODES: Final = frozenset({"D1", "D2", "D3", "D22"})
"""Telnyx's SIP 403 codes for a concurrent-call limit of the account, its outbound profile, its connection or a
channel allocation (developers.telnyx.com/docs/voice/sip-trunking/troubleshooting/response-codes: "D1 403
Concurrent outbound calls exceed global limit")."""


def is_channel_limit(*fields: object) -> bool:
    """Whether a failed call's error fields (TeXML ``ErrorCode`` / ``ErrorMessage`` / ``HangupCause`` /
    ``SipResponseCode``, Call Control ``hangup_cause`` / ``sip_hangup_cause``) say the account's channel limit
    refused it: a D-code of ``CHANNEL_LIMIT_CODES``, or the reason phrase "User channel limit exceeded"."""
    for value in fields:
        if not isinstance(value, str | int) or isinstance(value, bool):
            continue
        text = str(value).strip()
        if text.upper() in CHANNEL_LIMIT_CODES or "channel limit" in text.lower():
            return True
        if any(token.strip("()[],;:.").upper() in CHANNEL_LIMIT_CODES for token in text.split()):
            return True
    return False


class WebhookRejected(Exception):
    """The callback is well signed but malformed (answered 400)."""


@dataclass(frozen=True)
class Callback:
    """A parsed callback, normalized across TeXML, Call Control and messaging."""

    provider_key: str
    kind: str
    attempt_id: uuid.UUID | None
    """The attempt the callback URL names (a hint: see ``attempt_hint_signed``)."""
    provider_id: str | None
    status: str | None
    terminal: bool
    sequence: int | None = None
    duration: int | None = None
    """The duration the provider reported (TeXML ``CallDuration``; a ``call_duration`` in a JSON hangup)."""
    answered: bool = False
    channel: Channel = Channel.PHONE_CALL
    counterpart: str | None = None
    """Messaging: the sender of an inbound message, the recipient of an outbound one."""
    text: str | None = None
    """Messaging: the text of an inbound message (for opt-out keywords)."""
    error_codes: tuple[str, ...] = ()
    """Messaging: ``payload.errors[].code`` (40300 means the recipient opted out)."""
    attempt_hint_signed: bool = False
    """Whether ``attempt_id`` came with a valid MAC (``hints``): only then may it name an attempt whose provider id
    is not stored yet; an unsigned hint is believed only when the ids agree (``campaigns.webhooks``)."""
    elapsed: int | None = None
    """Call Control ``call.hangup``: whole seconds from ``payload.start_time`` to the hangup. Telnyx reports no
    duration on this webhook; this is the call's duration when it was answered."""
    answered_by: str | None = None
    """What answering-machine detection said (``campaigns.states.AnsweredBy``), where this callback says it."""
    channel_limited: bool = False
    """A failed call refused for the account's own channel limit (``is_channel_limit``), not the recipient's doing."""
    conversation_id: str | None = None
    """``call.conversation.ended`` ``payload.conversation_id`` (TeXML: a ``ConversationId`` field where sent)."""
    insights: dict[str, Any] | None = None
    """``call.conversation_insights.generated``: ``{"insight_group_id", "results": [{"insight_id", "result"}]}``."""


def _parse_uuid(value: object) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _instant(value: object) -> datetime | None:
    """An ISO 8601 timestamp with its offset (``…Z`` included), else ``None``."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _hangup_elapsed(data: Mapping[str, Any], payload: Mapping[str, Any]) -> int | None:
    """Seconds between a hangup's ``payload.start_time`` ("when the call started") and its end.

    The end is ``payload.end_time`` where it is sent (Telnyx's Call Control v1 webhook reference, and what the
    simulator sends), else ``data.occurred_at``, the moment of the hangup event itself. Field names from Telnyx's
    API reference (developers.telnyx.com/api-reference/callbacks/call-hangup) and the official SDK's
    ``telnyx/types/call_hangup.py`` (``Payload.start_time``, ``CallHangup.occurred_at``; 4.189.0).
    """
    started = _instant(payload.get("start_time"))
    ended = _instant(payload.get("end_time")) or _instant(data.get("occurred_at"))
    if started is None or ended is None or ended < started:
        return None
    return int((ended - started).total_seconds())


def parse_texml_status(form: Mapping[str, str], attempt_hint: str | None, hint_key: bytes | None = None) -> Callback:
    """A form-encoded TeXML status callback; ``hint_key`` verifies the attempt hint (``hints.hint_key``)."""
    hinted, signed = read_hint(attempt_hint, hint_key)
    call_sid = form.get("CallSid") or form.get("CallControlId")
    status = form.get("CallStatus")
    raw_answered_by = form.get("AnsweredBy")
    answered_by = (
        TEXML_ANSWERED_BY.get(raw_answered_by.strip().lower(), AnsweredBy.UNKNOWN) if raw_answered_by else None
    )
    if call_sid and not status and answered_by is not None:
        # The AsyncAmdStatusCallback: CallSid and AnsweredBy, no CallStatus.
        return Callback(
            provider_key=f"texml:{call_sid}:amd:{raw_answered_by}",
            kind="texml.amd",
            attempt_id=hinted,
            attempt_hint_signed=signed,
            provider_id=call_sid,
            status="amd",
            terminal=False,
            answered_by=answered_by,
        )
    if not call_sid or not status:
        raise WebhookRejected("CallSid and CallStatus are required")
    sequence = _int(form.get("SequenceNumber"))
    key = f"texml:{call_sid}:{status}:{sequence if sequence is not None else ''}"
    terminal = status in TERMINAL_CALL_STATUSES
    limited = status == CallStatus.FAILED and is_channel_limit(
        form.get("ErrorCode"), form.get("ErrorMessage"), form.get("HangupCause"), form.get("SipResponseCode"),
        form.get("SipHangupCause"),
    )  # fmt: skip
    return Callback(
        provider_key=key,
        kind=f"texml.{status}",
        attempt_id=hinted,
        attempt_hint_signed=signed,
        provider_id=call_sid,
        status=status,
        terminal=terminal,
        sequence=sequence,
        duration=_int(form.get("CallDuration")) if terminal else None,
        answered=status == CallStatus.IN_PROGRESS,
        answered_by=answered_by,
        channel_limited=limited,
        conversation_id=form.get("ConversationId") or None,
    )


def parse_json_event(body: Mapping[str, Any], attempt_hint: str | None, hint_key: bytes | None = None) -> Callback:
    """A JSON Call Control or messaging webhook; ``hint_key`` verifies the attempt hint (``hints.hint_key``)."""
    data = body.get("data")
    if not isinstance(data, dict):
        raise WebhookRejected("data is required")
    event_type = data.get("event_type")
    event_id = data.get("id")
    payload = data.get("payload")
    if not isinstance(event_type, str) or not isinstance(payload, dict):
        raise WebhookRejected("data.event_type and data.payload are required")
    key = f"json:{event_id}" if event_id else f"json:{event_type}:{json.dumps(payload, sort_keys=True)[:400]}"
    attempt_id, signed = read_hint(attempt_hint, hint_key)
    if event_type.startswith("message."):
        to = payload.get("to")
        status = None
        if isinstance(to, list) and to and isinstance(to[0], dict):
            status = to[0].get("status")
        message_id = payload.get("id")
        inbound = event_type == "message.received"
        errors = payload.get("errors")
        if errors is not None and not isinstance(errors, list):
            raise WebhookRejected("data.payload.errors must be a list")
        return Callback(
            provider_key=key,
            kind=event_type,
            attempt_id=None if inbound else attempt_id,
            attempt_hint_signed=signed and not inbound,
            provider_id=message_id if isinstance(message_id, str) and not inbound else None,
            status=None if inbound or not isinstance(status, str) else status,
            terminal=event_type == "message.finalized",
            channel=Channel.SMS_CHAT,
            counterpart=_message_counterpart(payload, inbound),
            text=payload.get("text") if inbound and isinstance(payload.get("text"), str) else None,
            error_codes=tuple(
                str(e["code"]) for e in errors or [] if isinstance(e, dict) and e.get("code") is not None
            ),
        )
    if event_type.startswith("call."):
        state = payload.get("client_state")
        if attempt_id is None and isinstance(state, str):
            try:
                attempt_id = _parse_uuid(base64.b64decode(state, validate=True).decode())
            except (binascii.Error, UnicodeDecodeError):
                attempt_id = None
            # ``client_state`` is ours (set at dial, echoed by Telnyx) and inside the signed body: as good as a MAC.
            signed = attempt_id is not None
        call_id = payload.get("call_control_id")
        provider_id = call_id if isinstance(call_id, str) else None
        if event_type == "call.hangup":
            cause = payload.get("hangup_cause")
            return Callback(
                provider_key=key,
                kind=event_type,
                attempt_id=attempt_id,
                attempt_hint_signed=signed,
                provider_id=provider_id,
                status=str(cause or "unspecified"),
                terminal=True,
                duration=_int(payload.get("call_duration")),
                elapsed=_hangup_elapsed(data, payload),
                # payload.sip_hangup_cause: "the reason the call was ended (SIP response code)" (SDK call_hangup.py).
                channel_limited=is_channel_limit(payload.get("sip_hangup_cause")),
            )
        if event_type in DETECTION_EVENTS:
            result = payload.get("result")
            return Callback(
                provider_key=key,
                kind=event_type,
                attempt_id=attempt_id,
                attempt_hint_signed=signed,
                provider_id=provider_id,
                status="amd",
                terminal=False,
                answered_by=CALL_CONTROL_ANSWERED_BY.get(str(result), AnsweredBy.UNKNOWN),
            )
        if event_type in CONVERSATION_EVENTS:
            conversation_id = payload.get("conversation_id")
            insights = None
            if event_type == "call.conversation_insights.generated":
                results = payload.get("results")
                insights = {
                    "insight_group_id": payload.get("insight_group_id"),
                    "results": [r for r in results if isinstance(r, dict)] if isinstance(results, list) else [],
                }
            return Callback(
                provider_key=key,
                kind=event_type,
                attempt_id=attempt_id,
                attempt_hint_signed=signed,
                provider_id=provider_id,
                status="conversation",
                terminal=False,
                conversation_id=conversation_id if isinstance(conversation_id, str) and conversation_id else None,
                insights=insights,
            )
        return Callback(
            provider_key=key,
            kind=event_type,
            attempt_id=attempt_id,
            attempt_hint_signed=signed,
            provider_id=provider_id,
            status=CallStatus.IN_PROGRESS if event_type == "call.answered" else event_type.removeprefix("call."),
            terminal=False,
            answered=event_type == "call.answered",
        )
    return Callback(
        provider_key=key,
        kind=event_type,
        attempt_id=attempt_id,
        attempt_hint_signed=signed,
        provider_id=None,
        status=None,
        terminal=False,
    )


def _message_counterpart(payload: Mapping[str, Any], inbound: bool) -> str | None:
    """``payload.from.phone_number`` of an inbound message, ``payload.to[0].phone_number`` of an outbound one."""
    if inbound:
        sender = payload.get("from")
        number = sender.get("phone_number") if isinstance(sender, dict) else None
    else:
        to = payload.get("to")
        number = to[0].get("phone_number") if isinstance(to, list) and to and isinstance(to[0], dict) else None
    return number if isinstance(number, str) else None
