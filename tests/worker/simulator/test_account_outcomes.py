"""The outcomes about the account rather than the recipient: ``http_401`` / ``http_403`` (Telnyx's error envelope,
and the whole account refused while the script's default), and ``channel_limit`` (accepted, then a ``failed``
callback carrying SIP 403 "User channel limit exceeded" D1)."""

from __future__ import annotations

import pytest

from tests.worker.simulator.support import TEXML, Receiver, eventually, simulator, texml_body

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("outcome", "status", "code"), [("http_401", 401, "10009"), ("http_403", 403, "10010")])
async def test_a_scripted_rejection_answers_telnyx_error_envelope(outcome: str, status: int, code: str) -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550001111": [outcome]}})
        response = await client.post(TEXML, json=texml_body("+15550001111", None))
        assert response.status_code == status and response.json()["errors"][0]["code"] == code
        assert (await client.post(TEXML, json=texml_body("+15550001111", None))).status_code == 200
        assert (await client.get("/v2/balance", headers={"Authorization": "Bearer KEY"})).status_code == 200


async def test_a_rejected_account_refuses_everything_until_the_script_changes() -> None:
    async with simulator() as client:
        auth = {"Authorization": "Bearer KEY"}
        await client.post("/_simulator/script", json={"default": "http_401", "targets": {"+15550001111": ["busy"]}})
        assert (await client.post(TEXML, json=texml_body("+15550001111", None))).status_code == 401
        balance = await client.get("/v2/balance", headers=auth)
        assert balance.status_code == 401 and balance.json()["errors"][0]["title"] == "Authentication failed"
        await client.post("/_simulator/script", json={})
        balance = await client.get("/v2/balance", headers=auth)
        assert balance.status_code == 200 and balance.json()["data"]["record_type"] == "balance"


async def test_channel_limit_is_accepted_then_fails_with_the_d1_fields(receiver: Receiver) -> None:
    callback = f"{receiver.url}/texml?attempt_id=att-1"
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550002222": ["channel_limit"]}})
        response = await client.post(TEXML, json=texml_body("+15550002222", callback))
        assert response.status_code == 200 and response.json()["call_sid"]
        await eventually(lambda: len(receiver.on("/texml")) == 2)
        forms = [r.form() for r in receiver.on("/texml")]
        assert [f["CallStatus"] for f in forms] == ["initiated", "failed"]
        failed = forms[1]
        assert (failed["SipResponseCode"], failed["ErrorCode"]) == ("403", "D1")
        assert failed["ErrorMessage"] == "User channel limit exceeded"
        assert failed["HangupCause"] == "call_rejected"
