"""Applying verified callbacks (campaigns/webhooks.py): the duration of a Call Control call."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy.orm import Session, sessionmaker

from campaigns import telephony, webhooks
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.settings import Settings
from tests.campaigns.lifecycle.harness import claim, create, dispatch, load
from tests.conftest import TEST_TELNYX_BASE_URL
from tests.factories import call_body
from worker.runtime import Runtime


@pytest.fixture
def cc_runtime(settings: Settings, clock: FrozenClock, sessions: sessionmaker[Session]) -> Runtime:
    """The runtime with calls dialled through Call Control."""
    cc = settings.model_copy(update={"call_provider": "call_control"})
    client = httpx.Client(base_url=cc.telnyx_base_url + "/", timeout=2.0)
    return Runtime(settings=cc, clock=clock, sessions=sessions, providers=telephony.providers_from_settings(cc, client))


def deliver(rt: Runtime, attempt_id: uuid.UUID, event_type: str, **payload: Any) -> str:
    state = base64.b64encode(str(attempt_id).encode()).decode()
    body = {
        "data": {
            "event_type": event_type,
            "id": str(uuid.uuid4()),
            "occurred_at": "2026-05-07T14:50:00Z",
            "payload": {"call_control_id": "v3:cc", "client_state": state, **payload},
        }
    }
    callback = telephony.parse_json_event(body, None)
    with unit_of_work(rt.sessions) as s:
        return webhooks.record_and_apply(s, callback, json.dumps(body).encode(), now=rt.clock.now())


def dialled(rt: Runtime, clock: FrozenClock, **overrides: Any) -> tuple[uuid.UUID, uuid.UUID]:
    respx.post(f"{TEST_TELNYX_BASE_URL}/calls").mock(
        return_value=httpx.Response(200, json={"data": {"call_control_id": "v3:cc", "is_alive": False}})
    )
    event_id = create(rt, call_body(clock.now(), **overrides))
    clock.advance(600)
    (attempt_id,) = claim(rt)
    assert dispatch(rt, attempt_id) == "sent"
    return event_id, attempt_id


@respx.mock
def test_an_answered_call_control_call_lasts_from_its_start_to_its_hangup(
    cc_runtime: Runtime, clock: FrozenClock
) -> None:
    event_id, attempt_id = dialled(cc_runtime, clock)
    assert deliver(cc_runtime, attempt_id, "call.answered") == "progress"
    result = deliver(
        cc_runtime,
        attempt_id,
        "call.hangup",
        hangup_cause="normal_clearing",
        hangup_source="callee",
        start_time="2026-05-07T14:45:03.120000Z",
        end_time="2026-05-07T14:46:40.700000Z",
    )
    assert result == "completed"
    event = load(cc_runtime.sessions, event_id)
    assert (event.status, event.call_status, event.call_duration) == ("completed", "completed", 97)
    assert [a.call_duration for a in event.attempts] == [97]


@respx.mock
def test_an_unanswered_call_control_call_has_no_duration(cc_runtime: Runtime, clock: FrozenClock) -> None:
    """Ringing is not talking: the span of a call nobody answered is not its duration (TeXML reports none)."""
    event_id, attempt_id = dialled(cc_runtime, clock, max_retries_client_errors=1, retry_interval_secs=60)
    result = deliver(
        cc_runtime,
        attempt_id,
        "call.hangup",
        hangup_cause="timeout",
        start_time="2026-05-07T14:45:03Z",
        end_time="2026-05-07T14:45:33Z",
    )
    assert result == "no-answer"
    event = load(cc_runtime.sessions, event_id)
    assert (event.status, event.call_duration, [a.call_duration for a in event.attempts]) == ("pending", None, [None])
    assert event.scheduled_at_fixed_datetime == clock.now() + timedelta(seconds=60)
