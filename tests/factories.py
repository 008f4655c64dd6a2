"""Building events the way the API does."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from campaigns.events import create_event, validate_create
from campaigns.models import ScheduledEvent

ASSISTANT = "assistant-1"


def call_body(now: datetime, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "telnyx_conversation_channel": "phone_call",
        "telnyx_end_user_target": "+15551234567",
        "telnyx_agent_target": "+15553456789",
        "scheduled_at_fixed_datetime": (now + timedelta(minutes=5)).isoformat(),
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def sms_body(now: datetime, **overrides: Any) -> dict[str, Any]:
    return call_body(now, telnyx_conversation_channel="sms_chat", text="Reminder: tomorrow 10 AM", **overrides)


def make_event(session: Session, now: datetime, body: dict[str, Any] | None = None, **overrides: Any) -> ScheduledEvent:
    new = validate_create(body or call_body(now, **overrides), now=now, default_ruleset="none")
    return create_event(session, ASSISTANT, new, now=now)
