"""The outcome settings on ``/v2`` events and campaigns: validated like Telnyx's retry fields, a 400 naming the
field, stored and returned (worker/api/events.py, campaigns/events/validation.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from campaigns.campaign import validate_settings
from campaigns.clock import FrozenClock
from campaigns.errors import ValidationFailed
from tests.factories import call_body, sms_body
from worker.api import create_app
from worker.runtime import Runtime

BASE = "/v2/ai/assistants/a1/scheduled_events"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as c:
        yield c


def pointers(response: Any) -> list[str]:
    return [e["source"]["pointer"] for e in response.json()["errors"]]


def test_outcome_settings_are_stored_and_returned(client: TestClient, clock: FrozenClock) -> None:
    policy = {"busy": {"max_retries": 2, "retry_interval_secs": 900}, "voicemail": {"max_retries": 1,
              "retry_interval_secs": 3600}}  # fmt: skip
    body = {**call_body(clock.now()), "answering_machine_detection": "detect_premium", "voicemail_action": "complete",
            "retry_policy": policy}  # fmt: skip
    created = client.post(BASE, json=body)
    assert created.status_code == 201, created.text
    event = client.get(f"{BASE}/{created.json()['scheduled_event_id']}").json()
    assert (event["answering_machine_detection"], event["voicemail_action"]) == ("detect_premium", "complete")
    assert event["retry_policy"] == policy and event["outcome_retries"] == {} and event["free_attempts"] == 0


def test_telnyx_defaults(client: TestClient, clock: FrozenClock) -> None:
    event = client.post(BASE, json=call_body(clock.now())).json()
    assert (event["answering_machine_detection"], event["voicemail_action"], event["retry_policy"]) == (
        "disabled",
        "retry",
        None,
    )


@pytest.mark.parametrize(("extra", "pointer"), [
    ({"retry_policy": {"busy": {"max_retries": 11, "retry_interval_secs": 900}}}, "/retry_policy/busy/max_retries"),
    ({"retry_policy": {"busy": {"max_retries": 1, "retry_interval_secs": 59}}},
     "/retry_policy/busy/retry_interval_secs"),
    ({"retry_policy": {"busy": {"max_retries": 1}}}, "/retry_policy/busy/retry_interval_secs"),
    ({"retry_policy": {"busy": {"max_retries": True, "retry_interval_secs": 60}}}, "/retry_policy/busy/max_retries"),
    ({"retry_policy": {"answered": {"max_retries": 1, "retry_interval_secs": 60}}}, "/retry_policy/answered"),
    ({"retry_policy": {"busy": {"max_retries": 1, "retry_interval_secs": 60, "x": 1}}}, "/retry_policy/busy/x"),
    ({"retry_policy": []}, "/retry_policy"),
    ({"answering_machine_detection": "premium"}, "/answering_machine_detection"),
    ({"voicemail_action": "hangup"}, "/voicemail_action"),
])  # fmt: skip
def test_invalid_outcome_settings_are_a_400_naming_the_field(
    client: TestClient, clock: FrozenClock, extra: dict[str, Any], pointer: str
) -> None:
    response = client.post(BASE, json={**call_body(clock.now()), **extra})
    assert response.status_code == 400, response.text
    assert pointers(response) == [pointer]


def test_no_outcome_settings_on_sms(client: TestClient, clock: FrozenClock) -> None:
    body = {**sms_body(clock.now()), "retry_policy": {"busy": {"max_retries": 1, "retry_interval_secs": 60}},
            "answering_machine_detection": "detect"}  # fmt: skip
    response = client.post(BASE, json=body)
    assert response.status_code == 400
    assert sorted(pointers(response)) == ["/answering_machine_detection", "/retry_policy"]


def test_campaign_settings_default_to_detection_and_name_the_field(clock: FrozenClock) -> None:
    base = {"name": "c", "assistant_id": "a", "telnyx_agent_target": "+15553456789"}
    settings = validate_settings(base, now=clock.now())
    assert (settings.answering_machine_detection, settings.voicemail_action) == ("detect", "retry")
    with pytest.raises(ValidationFailed) as failed:
        validate_settings(
            {**base, "retry_policy": {"voicemail": {"max_retries": 20, "retry_interval_secs": 60}}}, now=clock.now()
        )
    assert [e.pointer for e in failed.value.errors] == ["/campaign/retry_policy/voicemail/max_retries"]
