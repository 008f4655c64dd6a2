"""Scheduled events: validation, creation, listing, cancellation and the Telnyx wire shape."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from campaigns import metrics, windows
from campaigns.errors import Conflict, FieldError, NotFound, ValidationFailed
from campaigns.ids import uuid7
from campaigns.models import ScheduledEvent
from campaigns.states import TERMINAL_EVENT_STATUSES, EventStatus

CHANNELS = ("phone_call", "sms_chat")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
SIP_URI = re.compile(r"^sips?:[^@\s]+@[^\s@]+$", re.IGNORECASE)
CALL_STATUSES_TERMINAL = ("completed", "busy", "no-answer", "failed", "canceled")
SIP_REGIONS = ("US", "Europe", "Canada", "Australia", "Middle East")
NOTIFY_CHANNEL = "campaigns_due"

KNOWN_FIELDS = frozenset(
    {
        "telnyx_conversation_channel",
        "telnyx_end_user_target",
        "telnyx_agent_target",
        "scheduled_at_fixed_datetime",
        "text",
        "conversation_metadata",
        "dynamic_variables",
        "max_retries_client_errors",
        "retry_interval_secs",
        "call_settings",
        # Extensions.
        "ruleset",
        "timezone",
    }
)


@dataclass(frozen=True)
class NewEvent:
    """A validated create request."""

    channel: str
    end_user_target: str
    agent_target: str
    scheduled_at: datetime
    text: str | None
    conversation_metadata: dict[str, str | int | bool]
    dynamic_variables: dict[str, str]
    max_retries_client_errors: int
    retry_interval_secs: int | None
    call_settings: dict[str, Any] | None
    ruleset: str
    timezone: str | None


def parse_datetime(value: object) -> datetime | None:
    """An ISO 8601 instant; a value without an offset is taken as UTC. ``None`` when unparseable."""
    if not isinstance(value, str) or not value.strip():
        return None
    raw = value.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        parsed.astimezone(UTC)  # 9999-12-31T23:00-05:00 is past the last representable instant
    except OverflowError:
        return None
    return parsed


MAX_STRING = 255
"""Longest value of the short text columns (targets, assistant ids, names)."""
MAX_INT32 = 2**31 - 1
"""Largest value of the integer columns."""


def nul_characters(value: object, pointer: str) -> list[FieldError]:
    """Where a NUL character hides in a JSON value (PostgreSQL stores none in text or JSONB): one error per
    string or key that holds one, named by its JSON pointer."""
    if isinstance(value, str):
        return [FieldError(pointer, "must not contain NUL characters (\\u0000)")] if "\x00" in value else []
    found: list[FieldError] = []
    if isinstance(value, dict):
        for key, item in value.items():
            key_pointer = f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if isinstance(key, str) and "\x00" in key:
                found.append(FieldError(key_pointer, "keys must not contain NUL characters (\\u0000)"))
            found.extend(nul_characters(item, key_pointer))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(nul_characters(item, f"{pointer}/{i}"))
    return found


def is_target(value: str) -> bool:
    return bool(E164.match(value) or SIP_URI.match(value))


def is_int(value: object) -> TypeGuard[int]:
    """An integer that is not a bool (JSON ``true`` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def validate_create(
    body: object, *, now: datetime, default_ruleset: str, known_rulesets: frozenset[str] | None = None
) -> NewEvent:
    """Check a create request against every documented rule; raise ``ValidationFailed`` listing them all."""
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("", "request body must be a JSON object")])
    errors: list[FieldError] = []

    def bad(name: str, detail: str) -> None:
        errors.append(FieldError(f"/{name}", detail))

    channel = body.get("telnyx_conversation_channel")
    if channel is None:
        bad("telnyx_conversation_channel", "is required")
    elif channel not in CHANNELS:
        bad("telnyx_conversation_channel", "must be one of phone_call, sms_chat")

    targets: dict[str, str] = {}
    for name in ("telnyx_end_user_target", "telnyx_agent_target"):
        value = body.get(name)
        if value is None or value == "":
            bad(name, "is required")
        elif not isinstance(value, str):
            bad(name, "must be a string")
        elif len(value.strip()) > MAX_STRING:
            bad(name, f"must be at most {MAX_STRING} characters")
        elif not is_target(value.strip()):
            bad(name, "must be a phone number in E.164 form (+15551234567) or a SIP URI (sip:user@host)")
        else:
            targets[name] = value.strip()

    scheduled_raw = body.get("scheduled_at_fixed_datetime")
    scheduled_at = parse_datetime(scheduled_raw)
    if scheduled_raw is None:
        bad("scheduled_at_fixed_datetime", "is required")
    elif scheduled_at is None:
        bad("scheduled_at_fixed_datetime", "must be an ISO 8601 date-time, e.g. 2026-05-08T15:00:00Z")
    elif scheduled_at <= now:
        bad("scheduled_at_fixed_datetime", f"must be in the future (now is {now.isoformat()})")

    message = body.get("text")
    if channel == "sms_chat":
        if message is None or (isinstance(message, str) and not message.strip()):
            bad("text", "is required for sms_chat events")
        elif not isinstance(message, str):
            bad("text", "must be a string")
    elif message is not None and not isinstance(message, str):
        bad("text", "must be a string")

    metadata = body.get("conversation_metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        bad("conversation_metadata", "must be an object")
    else:
        for key, value in metadata.items():
            if not isinstance(value, str | bool) and not is_int(value):
                errors.append(
                    FieldError(f"/conversation_metadata/{key}", "values must be strings, integers or booleans")
                )

    variables = body.get("dynamic_variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        bad("dynamic_variables", "must be an object")
    else:
        for key, value in variables.items():
            if not isinstance(value, str):
                errors.append(FieldError(f"/dynamic_variables/{key}", "values must be strings"))

    retries = body.get("max_retries_client_errors")
    interval = body.get("retry_interval_secs")
    check_retry_policy(channel, retries, interval, bad)

    call_settings = body.get("call_settings")
    if call_settings is not None:
        if channel == "sms_chat":
            bad("call_settings", "applies to phone_call events only")
        elif not isinstance(call_settings, dict):
            bad("call_settings", "must be an object")
        elif call_settings.get("sip_region") not in (None, *SIP_REGIONS):
            errors.append(FieldError("/call_settings/sip_region", f"must be one of {', '.join(SIP_REGIONS)}"))

    ruleset = body.get("ruleset", default_ruleset)
    if not isinstance(ruleset, str) or (known_rulesets is not None and ruleset not in known_rulesets):
        bad("ruleset", f"must be one of {', '.join(sorted(known_rulesets or {'none'}))}")
    timezone = body.get("timezone")
    if timezone is not None and not windows.is_timezone(timezone):
        bad("timezone", "must be an IANA time zone name, e.g. America/New_York")

    unknown = sorted(set(body) - KNOWN_FIELDS)
    for name in unknown:
        bad(name, "is not a known field")
    errors.extend(nul_characters(body, ""))

    if errors:
        raise ValidationFailed(errors)
    assert scheduled_at is not None and isinstance(channel, str)
    is_call = channel == "phone_call"
    return NewEvent(
        channel=channel,
        end_user_target=targets["telnyx_end_user_target"],
        agent_target=targets["telnyx_agent_target"],
        scheduled_at=scheduled_at.astimezone(UTC),
        text=message if isinstance(message, str) else None,
        conversation_metadata=dict(metadata),
        dynamic_variables=dict(variables),
        max_retries_client_errors=int(retries or 0) if is_call else 0,
        retry_interval_secs=int(interval) if is_call and interval else None,
        call_settings=dict(call_settings) if isinstance(call_settings, dict) else None,
        ruleset=str(ruleset),
        timezone=timezone if isinstance(timezone, str) else None,
    )


def check_retry_policy(channel: object, retries: object, interval: object, bad: Callable[[str, str], None]) -> None:
    """The documented retry rules, shared by events and campaigns: 0-10 retries, 60-86400 s, both or neither,
    neither on SMS."""
    if channel == "sms_chat":
        if retries not in (None, 0):
            bad("max_retries_client_errors", "retries apply to phone_call only; omit it for sms_chat")
        if interval not in (None, 0):
            bad("retry_interval_secs", "retries apply to phone_call only; omit it for sms_chat")
        return
    if retries is not None and (not is_int(retries) or not 0 <= retries <= 10):
        bad("max_retries_client_errors", "must be an integer from 0 to 10")
    if interval is not None and (not is_int(interval) or not 60 <= interval <= 86400):
        bad("retry_interval_secs", "must be an integer from 60 to 86400")
    has_retries = is_int(retries) and retries > 0
    if has_retries and interval is None:
        bad("retry_interval_secs", "is required when max_retries_client_errors is greater than 0")
    if interval not in (None, 0) and not has_retries and retries in (None, 0):
        bad("retry_interval_secs", "is only allowed together with max_retries_client_errors greater than 0")


MAX_PAGE_NUMBER = 1_000_000
"""Highest ``page[number]`` accepted: keeps ``(page - 1) * size`` far inside PostgreSQL's bigint OFFSET."""


def page_envelope(data: list[dict[str, Any]], total: int, page_number: int, page_size: int) -> dict[str, Any]:
    """The Telnyx list envelope: ``data`` and ``meta`` with page counts."""
    return {
        "data": data,
        "meta": {
            "total_pages": (total + page_size - 1) // page_size,
            "total_results": total,
            "page_number": page_number,
            "page_size": page_size,
        },
    }


def notify_due(session: Session) -> None:
    """Wake sleeping schedulers when the transaction commits."""
    session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


def create_event(
    session: Session,
    assistant_id: str,
    new: NewEvent,
    *,
    now: datetime,
    campaign_id: uuid.UUID | None = None,
) -> ScheduledEvent:
    """Store a validated event as ``pending``."""
    event = ScheduledEvent(
        id=uuid7(),
        assistant_id=assistant_id,
        telnyx_conversation_channel=new.channel,
        telnyx_end_user_target=new.end_user_target,
        telnyx_agent_target=new.agent_target,
        scheduled_at_fixed_datetime=new.scheduled_at,
        status="pending",
        conversation_metadata=new.conversation_metadata,
        dynamic_variables=new.dynamic_variables,
        call_settings=new.call_settings,
        text=new.text,
        created_at=now,
        updated_at=now,
        errors=[],
        max_retries_client_errors=new.max_retries_client_errors,
        retry_interval_secs=new.retry_interval_secs,
        retry_count=0,
        cancel_requested=False,
        campaign_id=campaign_id,
        ruleset=new.ruleset,
        timezone=new.timezone,
        timezone_candidates=windows.candidate_zones(phone=new.end_user_target, timezone=new.timezone),
        attempts=[],
    )
    session.add(event)
    session.flush()
    notify_due(session)
    metrics.EVENTS_CREATED.labels(new.channel, "api").inc()
    return event


def get_event(session: Session, assistant_id: str, event_id: str, *, for_update: bool = False) -> ScheduledEvent:
    try:
        key = uuid.UUID(event_id)
    except ValueError as exc:
        raise NotFound(event_id) from exc
    query = select(ScheduledEvent).where(ScheduledEvent.id == key, ScheduledEvent.assistant_id == assistant_id)
    if for_update:
        query = query.with_for_update()
    event = session.scalars(query).one_or_none()
    if event is None:
        raise NotFound(event_id)
    return event


@dataclass(frozen=True)
class EventFilter:
    assistant_id: str | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None
    channel: str | None = None
    status: str | None = None
    campaign_id: uuid.UUID | None = None
    end_user_target: str | None = None


def _filtered(query: Select[Any], f: EventFilter) -> Select[Any]:
    if f.assistant_id is not None:
        query = query.where(ScheduledEvent.assistant_id == f.assistant_id)
    if f.from_date is not None:
        query = query.where(ScheduledEvent.scheduled_at_fixed_datetime >= f.from_date)
    if f.to_date is not None:
        query = query.where(ScheduledEvent.scheduled_at_fixed_datetime <= f.to_date)
    if f.channel is not None:
        query = query.where(ScheduledEvent.telnyx_conversation_channel == f.channel)
    if f.status is not None:
        query = query.where(ScheduledEvent.status == f.status)
    if f.campaign_id is not None:
        query = query.where(ScheduledEvent.campaign_id == f.campaign_id)
    if f.end_user_target is not None:
        query = query.where(ScheduledEvent.telnyx_end_user_target == f.end_user_target)
    return query


def list_events(
    session: Session, f: EventFilter, *, page_number: int, page_size: int
) -> tuple[list[ScheduledEvent], int]:
    """One page of events ordered by scheduled time, and the total count."""
    total = session.scalar(_filtered(select(func.count()).select_from(ScheduledEvent), f)) or 0
    query = (
        _filtered(select(ScheduledEvent), f)
        .order_by(ScheduledEvent.scheduled_at_fixed_datetime, ScheduledEvent.id)
        .offset((page_number - 1) * page_size)
        .limit(page_size)
    )
    return list(session.scalars(query)), int(total)


def cancel_event(session: Session, event: ScheduledEvent, *, now: datetime) -> None:
    """DELETE semantics: pending → ``canceled``; in progress → no further attempts; terminal → ``Conflict``."""
    if event.status in TERMINAL_EVENT_STATUSES:
        raise Conflict(f"event is already {event.status}")
    if event.status == "pending":
        metrics.count_finished(event.telnyx_conversation_channel, "canceled")
        event.status = EventStatus.CANCELED
        event.errors = [*event.errors, "canceled by request before dispatch"]
    else:
        event.cancel_requested = True
    event.updated_at = now
    session.flush()


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def serialize_event(event: ScheduledEvent) -> dict[str, Any]:
    """The event as the Telnyx API returns it (plus the extension fields)."""
    body: dict[str, Any] = {
        "scheduled_event_id": str(event.id),
        "assistant_id": event.assistant_id,
        "telnyx_conversation_channel": event.telnyx_conversation_channel,
        "telnyx_end_user_target": event.telnyx_end_user_target,
        "telnyx_agent_target": event.telnyx_agent_target,
        "scheduled_at_fixed_datetime": _iso(event.scheduled_at_fixed_datetime),
        "status": event.status,
        "conversation_id": event.conversation_id,
        "conversation_metadata": event.conversation_metadata,
        "dynamic_variables": event.dynamic_variables,
        "created_at": _iso(event.created_at),
        "errors": list(event.errors),
        "retry_count": event.retry_count,
        # Extensions.
        "campaign_id": str(event.campaign_id) if event.campaign_id else None,
        "ruleset": event.ruleset,
        "timezone": event.timezone,
        "deferred_reason": event.deferred_reason,
        "deferred_until": _iso(event.deferred_until),
    }
    if event.telnyx_conversation_channel == "sms_chat":
        # No dispatched_at here: the Telnyx SDK tells SMS from call events by their fields.
        body["text"] = event.text
        return body
    body.update(
        {
            "call_status": event.call_status,
            "call_duration": event.call_duration,
            "call_attempts": [
                {
                    "attempt_number": a.attempt_number,
                    "attempted_at": _iso(a.attempted_at),
                    "call_status": a.call_status or a.last_status or "queued",
                    "call_duration": a.call_duration,
                    "telnyx_call_control_id": a.provider_id,
                }
                for a in event.attempts
                if a.attempted_at is not None
            ],
            "call_settings": event.call_settings,
            "dispatched_at": _iso(event.dispatched_at),
            "max_retries_client_errors": event.max_retries_client_errors,
            "retry_interval_secs": event.retry_interval_secs,
            "retry_attempts": len([a for a in event.attempts if a.attempted_at is not None]),
        }
    )
    return body
