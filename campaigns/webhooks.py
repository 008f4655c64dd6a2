"""Telnyx callbacks: parse, store durably (unique on the provider's identity), apply idempotently.

Signature verification happens in the HTTP layer before any of this runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from campaigns import lifecycle, suppression
from campaigns.models import CallAttempt, WebhookReceipt

# Call Control hangup causes before an answer → TeXML-style statuses (telnyx-api.md §2, an inference).
HANGUP_TO_STATUS = {
    # Only an answered call ends this way, even when call.answered has not arrived (yet).
    "normal_clearing": "completed",
    "time_limit": "completed",
    "user_busy": "busy",
    "no_answer": "no-answer",
    "timeout": "no-answer",
    "originator_cancel": "canceled",
    "call_rejected": "failed",
    "not_found": "failed",
    "unspecified": "failed",
}


class WebhookRejected(Exception):
    """The callback is well signed but malformed (answered 400)."""


@dataclass(frozen=True)
class Callback:
    """A parsed callback, normalized across TeXML, Call Control and messaging."""

    provider_key: str
    kind: str
    attempt_id: uuid.UUID | None
    provider_id: str | None
    status: str | None
    terminal: bool
    sequence: int | None = None
    duration: int | None = None
    answered: bool = False
    channel: str = "call"
    counterpart: str | None = None
    """Messaging: the sender of an inbound message, the recipient of an outbound one."""
    text: str | None = None
    """Messaging: the text of an inbound message (for opt-out keywords)."""
    error_codes: tuple[str, ...] = ()
    """Messaging: ``payload.errors[].code`` (40300 means the recipient opted out)."""


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


def parse_texml_status(form: Mapping[str, str], attempt_hint: str | None) -> Callback:
    """A form-encoded TeXML status callback."""
    call_sid = form.get("CallSid") or form.get("CallControlId")
    status = form.get("CallStatus")
    if not call_sid or not status:
        raise WebhookRejected("CallSid and CallStatus are required")
    sequence = _int(form.get("SequenceNumber"))
    key = f"texml:{call_sid}:{status}:{sequence if sequence is not None else ''}"
    terminal = status in lifecycle.TERMINAL_CALL_STATUSES
    return Callback(
        provider_key=key,
        kind=f"texml.{status}",
        attempt_id=_parse_uuid(attempt_hint),
        provider_id=call_sid,
        status=status,
        terminal=terminal,
        sequence=sequence,
        duration=_int(form.get("CallDuration")) if terminal else None,
        answered=status == "in-progress",
    )


def parse_json_event(body: Mapping[str, Any], attempt_hint: str | None) -> Callback:
    """A JSON Call Control or messaging webhook."""
    data = body.get("data")
    if not isinstance(data, dict):
        raise WebhookRejected("data is required")
    event_type = data.get("event_type")
    event_id = data.get("id")
    payload = data.get("payload")
    if not isinstance(event_type, str) or not isinstance(payload, dict):
        raise WebhookRejected("data.event_type and data.payload are required")
    key = f"json:{event_id}" if event_id else f"json:{event_type}:{json.dumps(payload, sort_keys=True)[:400]}"
    attempt_id = _parse_uuid(attempt_hint)
    if event_type.startswith("message."):
        to = payload.get("to")
        status = None
        if isinstance(to, list) and to and isinstance(to[0], dict):
            status = to[0].get("status")
        message_id = payload.get("id")
        inbound = event_type == "message.received"
        return Callback(
            provider_key=key,
            kind=event_type,
            attempt_id=None if inbound else attempt_id,
            provider_id=message_id if isinstance(message_id, str) and not inbound else None,
            status=None if inbound or not isinstance(status, str) else status,
            terminal=event_type == "message.finalized",
            channel="sms",
            counterpart=_message_counterpart(payload, inbound),
            text=payload.get("text") if inbound and isinstance(payload.get("text"), str) else None,
            error_codes=tuple(
                str(e["code"]) for e in payload.get("errors") or [] if isinstance(e, dict) and e.get("code") is not None
            ),
        )
    if event_type.startswith("call."):
        state = payload.get("client_state")
        if attempt_id is None and isinstance(state, str):
            try:
                attempt_id = _parse_uuid(base64.b64decode(state, validate=True).decode())
            except (binascii.Error, UnicodeDecodeError):
                attempt_id = None
        call_id = payload.get("call_control_id")
        provider_id = call_id if isinstance(call_id, str) else None
        if event_type == "call.hangup":
            cause = payload.get("hangup_cause")
            return Callback(
                provider_key=key,
                kind=event_type,
                attempt_id=attempt_id,
                provider_id=provider_id,
                status=str(cause or "unspecified"),
                terminal=True,
                duration=_int(payload.get("call_duration")),
            )
        return Callback(
            provider_key=key,
            kind=event_type,
            attempt_id=attempt_id,
            provider_id=provider_id,
            status="in-progress" if event_type == "call.answered" else event_type.removeprefix("call."),
            terminal=False,
            answered=event_type == "call.answered",
        )
    return Callback(
        provider_key=key,
        kind=event_type,
        attempt_id=attempt_id,
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


def _resolve_attempt(session: Session, callback: Callback) -> uuid.UUID | None:
    if callback.attempt_id is not None:
        found = session.scalar(select(CallAttempt.id).where(CallAttempt.id == callback.attempt_id))
        if found is not None:
            return found
    if callback.provider_id:
        return session.scalar(select(CallAttempt.id).where(CallAttempt.provider_id == callback.provider_id))
    return None


def record_and_apply(session: Session, callback: Callback, raw_body: bytes, *, now: datetime) -> str:
    """Store the receipt (a duplicate stops here) and apply it. Returns what happened, for logs and metrics."""
    return _record_and_apply(session, callback, _resolve_attempt(session, callback), raw_body, now=now)


@dataclass(frozen=True)
class Received:
    """A verified callback waiting to be applied, with the moment it arrived."""

    callback: Callback
    raw_body: bytes
    now: datetime


def record_and_apply_many(session: Session, items: Sequence[Received]) -> list[str]:
    """``record_and_apply`` for a batch in one transaction (group commit); results in the order of ``items``.

    The events are locked in id order, as the dispatch batch locks them, so a batch of callbacks and a batch of
    dispatches can never deadlock. Callbacks for the same event keep their arrival order.
    """
    # One query for the attempts the callbacks name (the usual case), one each for the rest (by provider id).
    hinted = [item.callback.attempt_id for item in items if item.callback.attempt_id is not None]
    event_of: dict[uuid.UUID, uuid.UUID] = {}
    if hinted:
        rows = session.execute(select(CallAttempt.id, CallAttempt.event_id).where(CallAttempt.id.in_(hinted))).all()
        event_of = {attempt_id: event_id for attempt_id, event_id in rows}
    attempts: list[uuid.UUID | None] = []
    for item in items:
        cb = item.callback
        if cb.attempt_id is not None and cb.attempt_id in event_of:
            attempts.append(cb.attempt_id)
            continue
        row = (
            session.execute(
                select(CallAttempt.id, CallAttempt.event_id).where(CallAttempt.provider_id == cb.provider_id)
            ).first()
            if cb.provider_id
            else None
        )
        attempts.append(row[0] if row is not None else None)
        if row is not None:
            event_of[row[0]] = row[1]

    def lock_order(i: int) -> tuple[int, uuid.UUID]:
        attempt = attempts[i]
        event_id = event_of.get(attempt) if attempt is not None else None
        return (0, event_id) if event_id is not None else (1, uuid.UUID(int=0))

    results = [""] * len(items)
    for i in sorted(range(len(items)), key=lock_order):
        item = items[i]
        results[i] = _record_and_apply(session, item.callback, attempts[i], item.raw_body, now=item.now)
    return results


def _record_and_apply(
    session: Session, callback: Callback, attempt_id: uuid.UUID | None, raw_body: bytes, *, now: datetime
) -> str:
    inserted = session.execute(
        insert(WebhookReceipt)
        .values(
            id=uuid.uuid4(),
            provider_key=callback.provider_key,
            kind=callback.kind,
            received_at=now,
            attempt_id=attempt_id,
            body=raw_body,
            result="received",
        )
        .on_conflict_do_nothing(index_elements=["provider_key"])
        .returning(WebhookReceipt.id)
    ).scalar_one_or_none()
    if inserted is None:
        return "duplicate"
    result = _apply(session, callback, attempt_id, now=now)
    session.execute(update(WebhookReceipt).where(WebhookReceipt.id == inserted).values(result=result[:64]))
    return result


def _apply(session: Session, cb: Callback, attempt_id: uuid.UUID | None, *, now: datetime) -> str:
    if cb.kind == "message.received":
        return suppression.apply_inbound_message(session, cb.counterpart, cb.text, now=now)
    if suppression.PROVIDER_BLOCK_CODE in cb.error_codes and cb.counterpart:
        suppression.record_provider_block(
            session,
            cb.counterpart,
            f"message {cb.status or 'failed'}: error {suppression.PROVIDER_BLOCK_CODE}",
            now=now,
        )
    if attempt_id is None:
        return "unmatched"
    if cb.status is None:
        return "ignored"
    if cb.channel == "sms":
        return lifecycle.apply_sms_outcome(session, attempt_id, cb.status, now=now, provider_id=cb.provider_id).reason
    if not cb.terminal:
        if cb.status not in ("initiated", "ringing", "in-progress", "queued"):
            return "ignored"
        return lifecycle.apply_progress(
            session, attempt_id, cb.status, sequence=cb.sequence, answered=cb.answered, now=now
        ).reason
    status = cb.status
    if cb.kind == "call.hangup":
        answered = session.scalar(select(CallAttempt.answered).where(CallAttempt.id == attempt_id))
        status = "completed" if answered else HANGUP_TO_STATUS.get(status, "failed")
    return lifecycle.apply_call_outcome(
        session,
        attempt_id,
        status,
        duration=cb.duration,
        now=now,
        sequence=cb.sequence,
        provider_id=cb.provider_id,
    ).reason
