"""End to end through ``campaigns simulator`` + ``campaigns up`` with the EHR-style export (issue 18): with a
``variables`` allow-list the Email and Last Name columns never reach the provider (``AIAssistantDynamicVariables``
of every call the simulator receives), and every SMS the simulator receives is fully rendered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stack import Stack, poll, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
EHR = Path(__file__).resolve().parents[1] / "data" / "csv" / "ehr_appointments.csv"
PHONES = {"+12125550101", "+12125550102", "+12125550103", "+12125550105"}  # the rows without an extension
SENT = ["first_name", "appointment_date", "appointment_time", "clinic"]


@pytest.fixture
def stack(database_url: str, redis_url: str, tmp_path: Path, sessions: object) -> Iterator[Stack]:
    with running_stack(database_url, redis_url, tmp_path) as running:
        yield running


def _create(api: httpx.Client, **settings: Any) -> str:
    body = {"name": "ehr", "assistant_id": "assistant-e2e", "telnyx_agent_target": "+15553456789",
            "ruleset": "none", "default_region": "US", **settings}  # fmt: skip
    created = api.post(
        "/v1/campaigns", files={"file": ("ehr.csv", EHR.read_bytes(), "text/csv")}, data={"campaign": json.dumps(body)}
    )
    assert created.status_code == 201, created.text
    assert created.json()["import"]["rows_accepted"] == len(PHONES)
    return str(created.json()["id"])


def test_only_allowed_variables_reach_the_provider_and_every_sms_is_rendered(stack: Stack) -> None:
    api, sim = stack.client(), httpx.Client(base_url=stack.sim, timeout=10)
    _create(api, variables=SENT)
    template = 'Hi {{ first_name | default("there") }}, {{clinic}} on {{appointment_date}} at {{appointment_time}}.'
    _create(api, telnyx_conversation_channel="sms_chat", text=template, variables=SENT)

    def received(kind: str) -> list[dict[str, Any]] | None:
        entries: list[dict[str, Any]] = sim.get(f"/_simulator/{kind}").json()["data"]
        return entries if {e["to"] for e in entries} >= PHONES else None

    try:
        calls = poll(lambda: received("calls"), timeout=60)
        messages = poll(lambda: received("messages"), timeout=60)
    except AssertionError:
        print(stack.tail())
        raise
    for call in calls:
        variables = call["body"]["AIAssistantDynamicVariables"]
        assert {k for k in variables if k != "scheduled_event_id"} == set(SENT), variables
        assert "ana@example.com" not in json.dumps(call["body"]) and "Ruiz" not in json.dumps(call["body"])
    texts = {m["to"]: m["body"]["text"] for m in messages}
    assert all("{" not in t and "}" not in t for t in texts.values()), texts
    assert texts["+12125550101"] == "Hi Ana, Midtown Clinic on 12/15/2026 at 2:30 PM."
    assert texts["+12125550105"] == "Hi there, Uptown Clinic on 12/17/2026 at 11:00 AM."
