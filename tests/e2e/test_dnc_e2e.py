"""End to end (``campaigns up`` + simulator, clock warped 60x): the do-not-contact list stops real sends.

- a STOP reply (a signed ``message.received`` from the simulator) stops the next scheduled SMS to that number;
- a number put on the list through the API is never sent to the provider (simulator request log), by call or SMS;
- a send refused with 40300 lists the number, and the later message to it is not sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.test_up import ASSISTANT, TOKEN, _healthz, poll, stack

__all__ = ["stack"]  # the fixture, imported for the tests below
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
AGENT = "+15553456789"
EVENTS = f"/v2/ai/assistants/{ASSISTANT}/scheduled_events"
TERMINAL = ("completed", "failed", "canceled")


def clients(stack: dict[str, Any]) -> tuple[httpx.Client, httpx.Client]:
    api = httpx.Client(base_url=stack["api"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    sim = httpx.Client(base_url=stack["sim"], timeout=10)
    poll(lambda: _healthz(api), timeout=60)
    return api, sim


def in_app_minutes(api: httpx.Client, minutes: float) -> datetime:
    """The app's time (60x warped) plus ``minutes``: one app minute is one real second."""
    return datetime.fromisoformat(poll(lambda: _healthz(api), timeout=10)["time"]) + timedelta(minutes=minutes)


def schedule(api: httpx.Client, at: datetime, to: str, channel: str = "sms_chat") -> str:
    body: dict[str, Any] = {
        "telnyx_conversation_channel": channel,
        "telnyx_end_user_target": to,
        "telnyx_agent_target": AGENT,
        "scheduled_at_fixed_datetime": at.isoformat(),
    }
    if channel == "sms_chat":
        body["text"] = "Reminder: your appointment is tomorrow at 10 AM"
    created = api.post(EVENTS, json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["scheduled_event_id"])


def finished(api: httpx.Client, event_id: str, stack: dict[str, Any], timeout: float = 40) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        event: dict[str, Any] = api.get(f"{EVENTS}/{event_id}").json()
        return event if event["status"] in TERMINAL else None

    try:
        result: dict[str, Any] = poll(terminal, timeout=timeout)
    except AssertionError:
        print(api.get(f"{EVENTS}/{event_id}").json())
        print((stack["logs"] / "up.log").read_text()[-5000:])
        raise
    return result


def requests_to(sim: httpx.Client, number: str) -> list[dict[str, Any]]:
    logged = sim.get("/_simulator/calls").json()["data"] + sim.get("/_simulator/messages").json()["data"]
    return [entry for entry in logged if entry["to"] == number]


def test_stop_reply_stops_the_next_scheduled_sms(stack: dict[str, Any]) -> None:
    api, sim = clients(stack)
    patient = "+15550002222"
    first = schedule(api, in_app_minutes(api, 3), patient)
    second = schedule(api, in_app_minutes(api, 30), patient)  # 30 real seconds later
    assert finished(api, first, stack)["status"] == "completed"
    assert len(requests_to(sim, patient)) == 1

    reply = sim.post(
        "/_simulator/inbound",
        json={"from": patient, "to": AGENT, "text": "STOP", "webhook_url": f"{stack['api']}/webhooks/telnyx"},
    )
    assert reply.status_code == 200
    # The simulator answers once the webhook was delivered: the worker has listed the number.
    entry = api.get(f"/v1/suppressions/{patient}")
    assert entry.status_code == 200 and entry.json()["reason"] == "sms_opt_out"
    assert api.get(f"{EVENTS}/{second}").json()["status"] == "pending"

    event = finished(api, second, stack, timeout=60)
    assert event["status"] == "failed"
    assert event["errors"] == [
        f"not dispatched: {patient} is on the do-not-contact list (sms_opt_out: the recipient opted out by SMS)"
    ]
    assert event.get("call_attempts", []) == []  # SMS events carry no call_attempts
    assert len(requests_to(sim, patient)) == 1  # only the message sent before the STOP


def test_listed_numbers_never_reach_the_provider(stack: dict[str, Any]) -> None:
    api, sim = clients(stack)
    listed, blocked, other = "+15550003333", "+15550004444", "+15550005555"
    assert api.post("/v1/suppressions", json={"phone_number": listed, "note": "e2e"}).status_code == 201
    assert sim.post("/_simulator/block", json={"phone_number": blocked}).status_code == 200
    soon = in_app_minutes(api, 3)
    listed_sms, listed_call = schedule(api, soon, listed), schedule(api, soon, listed, "phone_call")
    blocked_sms = schedule(api, soon, blocked)
    other_call = schedule(api, soon, other, "phone_call")

    assert finished(api, other_call, stack)["status"] == "completed"
    for event_id in (listed_sms, listed_call):
        event = finished(api, event_id, stack)
        assert event["status"] == "failed" and "do-not-contact list (manual" in event["errors"][0]
        assert event.get("call_attempts", []) == []  # SMS events carry no call_attempts
    assert requests_to(sim, listed) == []  # never sent to the provider
    assert len(requests_to(sim, other)) == 1

    refused = finished(api, blocked_sms, stack)
    assert refused["status"] == "failed" and "code 40300" in refused["errors"][-1]
    entry = api.get(f"/v1/suppressions/{blocked}").json()
    assert entry["reason"] == "provider_block"
    assert [e["outcome"] for e in requests_to(sim, blocked)] == ["blocked"]

    later = schedule(api, in_app_minutes(api, 3), blocked)
    event = finished(api, later, stack)
    assert event["status"] == "failed" and "provider_block" in event["errors"][0]
    assert len(requests_to(sim, blocked)) == 1  # the later message was never sent


def test_a_sip_target_on_the_do_not_contact_list_is_not_dialed(stack: dict[str, Any]) -> None:
    """Issue #19 item 3: with +12125550147 listed, both SIP URIs of it were dialed."""
    api, sim = clients(stack)
    listed = "+12125550147"
    assert api.post("/v1/suppressions", json={"phone_number": listed, "note": "e2e"}).status_code == 201
    soon = in_app_minutes(api, 3)
    targets = ("sip:+12125550147@sip.telnyx.com", "sip:12125550147@pstn.example")
    events = [schedule(api, soon, target, "phone_call") for target in targets]
    control = schedule(api, soon, "+15550006666", "phone_call")
    assert finished(api, control, stack)["status"] == "completed"
    for event_id, target in zip(events, targets, strict=True):
        event = finished(api, event_id, stack)
        assert event["status"] == "failed", event
        assert event["errors"][0].startswith(f"not dispatched: {target} is on the do-not-contact list (manual")
        assert requests_to(sim, target) == []  # never sent to the provider
    assert requests_to(sim, listed) == []
