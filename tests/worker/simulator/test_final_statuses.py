"""The messaging outcomes ``expired`` and ``delivery_unconfirmed``, and ``http_500`` (placed, then a real 500)
next to ``http_503`` (refused, nothing placed)."""

from __future__ import annotations

import pytest

from tests.worker.simulator.support import TEXML, Receiver, assert_signed, dial_body, eventually, simulator, texml_body

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("outcome", "error_code"), [("expired", "40005"), ("delivery_unconfirmed", None), ("delivered", None)]
)
async def test_a_message_outcome_is_the_final_status_of_message_finalized(
    receiver: Receiver, outcome: str, error_code: str | None
) -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550007000": [outcome]}})
        body = {"from": "+15550000000", "to": "+15550007000", "text": "hi", "webhook_url": f"{receiver.url}/m"}
        assert (await client.post("/v2/messages", json=body)).status_code == 200
        await eventually(lambda: len(receiver.on("/m")) == 2)
        sent, final = (r.json()["data"] for r in receiver.on("/m"))
        assert (sent["event_type"], sent["payload"]["to"][0]["status"]) == ("message.sent", "sent")
        assert (final["event_type"], final["payload"]["to"][0]["status"]) == ("message.finalized", outcome)
        assert [e["code"] for e in final["payload"]["errors"]] == ([error_code] if error_code else [])
        for request in receiver.on("/m"):
            assert_signed(request)


async def test_a_message_outcome_given_to_a_call_is_translated(receiver: Receiver) -> None:
    async with simulator() as client:
        script = {"targets": {"+15550007001": ["expired"], "+15550007002": ["delivery_unconfirmed"]}}
        await client.post("/_simulator/script", json=script)
        await client.post(TEXML, json=texml_body("+15550007001", f"{receiver.url}/expired"))
        await client.post(TEXML, json=texml_body("+15550007002", f"{receiver.url}/unconfirmed"))

        def last_status(path: str) -> str | None:
            received = receiver.on(path)
            return received[-1].form()["CallStatus"] if received else None

        await eventually(lambda: last_status("/expired") == "failed")
        await eventually(lambda: last_status("/unconfirmed") == "completed")


@pytest.mark.parametrize("path", ["texml", "dial", "message"])
async def test_http_500_is_a_real_500_after_placing(receiver: Receiver, path: str) -> None:
    """The request reached the provider and was placed, but the answer is a 500: the client cannot tell, so it
    must not re-send (the engine records the outcome as unknown and waits for the callbacks)."""
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550007100": ["http_500"]}})
        url = f"{receiver.url}/placed"

        def final() -> object:
            received = receiver.on("/placed")
            last = received[-1]
            if path == "texml":
                return last.form().get("CallStatus")
            if path == "dial":  # an answered call's hangup is followed by call.conversation.ended
                types = [r.json()["data"]["event_type"] for r in received]
                return "call.hangup" if "call.hangup" in types else types[-1]
            return last.json()["data"]["payload"]["to"][0]["status"]

        if path == "texml":
            response = await client.post(TEXML, json=texml_body("+15550007100", url))
            done, log_path = "completed", "/_simulator/calls"
        elif path == "dial":
            response = await client.post("/v2/calls", json=dial_body("+15550007100", url, command_id="cmd-500"))
            done, log_path = "call.hangup", "/_simulator/calls"
        else:
            body = {"from": "+15550000000", "to": "+15550007100", "text": "hi", "webhook_url": url}
            response = await client.post("/v2/messages", json=body)
            done, log_path = "delivered", "/_simulator/messages"
        assert response.status_code == 500
        assert response.json()["errors"][0]["code"] == "10007"
        await eventually(lambda: bool(receiver.on("/placed")) and final() == done)
        (entry,) = (await client.get(log_path)).json()["data"]
        assert (entry["outcome"], entry["status_code"]) == ("http_500", 500)
        assert entry["provider_id"] is not None  # recorded as placed


async def test_http_503_places_nothing(receiver: Receiver) -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550007200": ["http_503"]}})
        response = await client.post(TEXML, json=texml_body("+15550007200", f"{receiver.url}/refused"))
        assert response.status_code == 503
        await client.post(TEXML, json=texml_body("+15550007201", f"{receiver.url}/barrier"))
        await eventually(lambda: len(receiver.on("/barrier")) == 4)
        assert receiver.on("/refused") == []
        entry = (await client.get("/_simulator/calls")).json()["data"][0]
        assert (entry["outcome"], entry["status_code"], entry["provider_id"]) == ("http_503", 503, None)
