"""The simulator's opt-out behaviour: inbound replies as signed ``message.received``, block rules, 40300."""

from __future__ import annotations

import pytest

from tests.worker.simulator.support import AUTH, Receiver, assert_signed, simulator

pytestmark = pytest.mark.anyio

AGENT = "+15550000000"
PATIENT = "+15550008888"


async def test_stop_reply_is_delivered_signed_and_blocks_later_messages(receiver: Receiver) -> None:
    async with simulator() as client:
        reply = {"from": PATIENT, "to": AGENT, "text": " stop ", "webhook_url": f"{receiver.url}/in"}
        answer = await client.post("/_simulator/inbound", json=reply)
        assert answer.status_code == 200 and answer.json()["blocked"] is True
        (request,) = receiver.on("/in")  # delivered before the control call answered
        assert_signed(request)
        data = request.json()["data"]
        assert data["event_type"] == "message.received"
        assert data["payload"]["direction"] == "inbound"
        assert data["payload"]["from"]["phone_number"] == PATIENT
        assert data["payload"]["to"][0]["phone_number"] == AGENT
        assert data["payload"]["text"] == " stop "

        send = {"from": AGENT, "to": PATIENT, "text": "hi"}
        refused = await client.post("/v2/messages", json=send, headers=AUTH)
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["code"] == "40300"
        assert refused.json()["errors"][0]["title"] == "Blocked due to STOP message"
        assert (await client.get("/_simulator/messages")).json()["data"][-1]["outcome"] == "blocked"

        opt_in = await client.post("/_simulator/inbound", json={**reply, "text": "START"})
        assert opt_in.json()["blocked"] is False
        assert (await client.post("/v2/messages", json=send, headers=AUTH)).status_code == 200


async def test_block_without_a_webhook_and_reset() -> None:
    async with simulator() as client:
        assert (await client.post("/_simulator/block", json={"phone_number": PATIENT})).json() == {"blocked": [PATIENT]}
        send = {"from": AGENT, "to": PATIENT, "text": "hi"}
        assert (await client.post("/v2/messages", json=send, headers=AUTH)).status_code == 400
        await client.post("/_simulator/reset")
        assert (await client.post("/v2/messages", json=send, headers=AUTH)).status_code == 200
        bad = await client.post("/_simulator/inbound", json={"to": AGENT})
        assert bad.status_code == 422 and "'from' is required" in bad.json()["errors"][0]["detail"]
