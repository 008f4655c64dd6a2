"""``completed_late``: the call ends like ``completed`` and a status query says it is over, but its terminal
callback (TeXML ``completed``, Call Control ``call.hangup``) is held back for ``late_callback_delay`` seconds."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.worker.simulator.support import (
    TEXML,
    Receiver,
    assert_signed,
    dial_body,
    eventually,
    fast_config,
    simulator,
    texml_body,
)
from worker.simulator import OUTCOMES, SimulatorConfig

pytestmark = pytest.mark.anyio
DELAY = 0.6


def test_completed_late_is_an_outcome_with_a_default_delay() -> None:
    assert "completed_late" in OUTCOMES
    assert SimulatorConfig().late_callback_delay > 0


@pytest.mark.parametrize("path", ["texml", "dial"])
async def test_completed_late_ends_the_call_before_its_terminal_callback(receiver: Receiver, path: str) -> None:
    async with simulator(fast_config(late_callback_delay=DELAY)) as client:
        await client.post("/_simulator/script", json={"targets": {"+15550007200": ["completed_late"]}})
        url = f"{receiver.url}/late"
        started = time.monotonic()
        if path == "texml":
            response = await client.post(TEXML, json=texml_body("+15550007200", url))
            provider_id = response.json()["call_sid"]
        else:
            response = await client.post("/v2/calls", json=dial_body("+15550007200", url))
            provider_id = response.json()["data"]["call_control_id"]
        assert response.status_code == 200

        def kinds() -> list[str]:
            if path == "texml":
                return [r.form()["CallStatus"] for r in receiver.on("/late")]
            return [r.json()["data"]["event_type"] for r in receiver.on("/late")]

        async def alive() -> bool:
            status = await client.get(f"/v2/calls/{provider_id}")
            assert status.status_code == 200
            return bool(status.json()["data"]["is_alive"])

        # The call was answered and has ended: the status query says so, and no terminal callback came yet.
        answered = "in-progress" if path == "texml" else "call.answered"
        await eventually(lambda: answered in kinds())
        deadline = time.monotonic() + 5
        while await alive():
            assert time.monotonic() < deadline, "the call never ended"
            await asyncio.sleep(0.01)
        terminal = "completed" if path == "texml" else "call.hangup"
        assert terminal not in kinds()
        assert time.monotonic() - started < DELAY
        assert (await client.get(f"/v2/calls/{provider_id}")).json()["data"]["call_duration"] == 42

        # Then, late, the terminal callback (and call.conversation.ended for Call Control).
        await eventually(lambda: terminal in kinds(), timeout=5)
        assert time.monotonic() - started >= DELAY
        if path == "texml":
            (final,) = [r.form() for r in receiver.on("/late") if r.form()["CallStatus"] == "completed"]
            assert (final["CallDuration"], final["HangupCause"]) == ("42", "normal_clearing")
            assert kinds() == ["initiated", "ringing", "in-progress", "completed"]
        else:
            await eventually(lambda: "call.conversation.ended" in kinds())
            assert kinds() == ["call.initiated", "call.answered", "call.hangup", "call.conversation.ended"]
        for request in receiver.on("/late"):
            assert_signed(request)
        (entry,) = (await client.get("/_simulator/calls")).json()["data"]
        assert entry["outcome"] == "completed_late"


async def test_completed_late_given_to_a_message_is_delivered(receiver: Receiver) -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550007201": ["completed_late"]}})
        body = {"from": "+15550000000", "to": "+15550007201", "text": "hi", "webhook_url": f"{receiver.url}/m"}
        assert (await client.post("/v2/messages", json=body)).status_code == 200
        await eventually(lambda: len(receiver.on("/m")) == 2)
        assert receiver.on("/m")[-1].json()["data"]["payload"]["to"][0]["status"] == "delivered"
