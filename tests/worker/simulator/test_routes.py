"""The Telnyx-shaped endpoints and the control API, in-process; callbacks to a real local receiver."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from campaigns.telephony.signatures import SignatureError, private_key_b64, public_key_b64
from tests.worker.simulator.support import (
    KEY,
    TEXML,
    Received,
    Receiver,
    assert_signed,
    dial_body,
    eventually,
    fast_config,
    simulator,
    texml_body,
)

pytestmark = pytest.mark.anyio


# -- TeXML ----------------------------------------------------------------------------------------------


async def test_texml_completed_sends_signed_ordered_callbacks(receiver: Receiver) -> None:
    callback = f"{receiver.url}/texml?attempt_id=att-1&x=1"
    async with simulator() as client:
        response = await client.post(TEXML, json=texml_body("+15550001111", callback))
        assert response.status_code == 200
        reply = response.json()
        assert reply["status"] == "queued"
        assert reply["from"] == "+15550000000"
        assert reply["to"] == "+15550001111"
        assert reply["call_sid"].startswith("v3:")

        await eventually(lambda: len(receiver.on("/texml")) == 4)
        received = receiver.on("/texml")
        assert all(r.path == "/texml?attempt_id=att-1&x=1" for r in received)
        for request in received:
            assert request.headers["content-type"] == "application/x-www-form-urlencoded"
            assert_signed(request)
        forms = [r.form() for r in received]
        assert [f["CallStatus"] for f in forms] == ["initiated", "ringing", "in-progress", "completed"]
        assert [int(f["SequenceNumber"]) for f in forms] == [0, 1, 2, 3]
        for form in forms:
            assert form["CallSid"] == form["CallControlId"] == reply["call_sid"]
            assert form["ConnectionId"] == "texml-app-1"
            assert form["From"] == "+15550000000"
            assert form["To"] == "+15550001111"
            assert form["CallSessionId"]
            assert form["AccountSid"]
            assert datetime.fromisoformat(form["Timestamp"]).tzinfo is not None
        assert "CallDuration" not in forms[2]
        assert forms[3]["CallDuration"] == "42"
        assert forms[3]["HangupCause"] == "normal_clearing"
        assert forms[3]["HangupSource"]

        status = (await client.get(f"/v2/calls/{reply['call_sid']}")).json()["data"]
        assert status == {**status, "is_alive": False, "call_duration": 42, "record_type": "call"}

        entry = (await client.get("/_simulator/calls")).json()["data"][0]
        assert entry["attempt_id"] == "att-1"
        assert entry["outcome"] == "completed"
        assert entry["provider_id"] == reply["call_sid"]
        assert entry["duplicate"] is False
        assert entry["path"] == TEXML
        assert entry["to"] == "+15550001111"
        assert entry["body"]["AIAssistantId"] == "assistant-1"


async def test_texml_busy_ends_after_ringing(receiver: Receiver) -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550002222": ["busy"]}})
        response = await client.post(TEXML, json=texml_body("+15550002222", f"{receiver.url}/busy"))
        call_sid = response.json()["call_sid"]

        await eventually(lambda: len(receiver.on("/busy")) == 3)
        forms = [r.form() for r in receiver.on("/busy")]
        assert [f["CallStatus"] for f in forms] == ["initiated", "ringing", "busy"]
        assert [int(f["SequenceNumber"]) for f in forms] == [0, 1, 2]
        assert forms[2]["HangupCause"] == "user_busy"
        assert forms[2]["CallDuration"] == "0"
        for request in receiver.on("/busy"):
            assert_signed(request)

        status = (await client.get(f"/v2/calls/{call_sid}")).json()["data"]
        assert status["is_alive"] is False
        assert status["call_duration"] == 0


async def test_texml_missing_to_is_422_with_pointer() -> None:
    async with simulator() as client:
        body = texml_body("+15550001111", None)
        del body["To"]
        response = await client.post(TEXML, json=body)
        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["code"] == "10015"
        assert error["source"] == {"pointer": "/To"}
        entry = (await client.get("/_simulator/calls")).json()["data"][0]
        assert entry["status_code"] == 422
        assert entry["provider_id"] is None


async def test_tampered_callback_fails_verification(receiver: Receiver) -> None:
    async with simulator() as client:
        await client.post(TEXML, json=texml_body("+15550001111", f"{receiver.url}/t"))
        await eventually(lambda: len(receiver.on("/t")) >= 1)
        first = receiver.on("/t")[0]
        with pytest.raises(SignatureError):
            assert_signed(Received(first.path, first.headers, first.body + b"&x=1"))


# -- Call Control ---------------------------------------------------------------------------------------


async def test_call_control_command_id_dedupes(receiver: Receiver) -> None:
    async with simulator() as client:
        body = dial_body("+15550003333", f"{receiver.url}/cc?attempt_id=att-2", command_id="cmd-1")
        first = await client.post("/v2/calls", json=body)
        second = await client.post("/v2/calls", json=body)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        data = first.json()["data"]
        assert data["is_alive"] is False
        assert data["record_type"] == "call"
        assert data["call_control_id"].startswith("v3:")

        ended = "call.conversation.ended"  # an answered call's conversation (issue 17), after the hangup
        await eventually(lambda: any(r.json()["data"]["event_type"] == ended for r in receiver.on("/cc")))
        # A later, unrelated dial acts as a barrier: once its last webhook arrived, nothing else is in flight.
        await client.post("/v2/calls", json=dial_body("+15550009999", f"{receiver.url}/barrier"))
        await eventually(lambda: len(receiver.on("/barrier")) == 4)

        events = [r.json() for r in receiver.on("/cc")]
        assert [e["data"]["event_type"] for e in events] == ["call.initiated", "call.answered", "call.hangup", ended]
        for request in receiver.on("/cc"):
            assert request.headers["content-type"] == "application/json"
            assert_signed(request)
        for event in events:
            assert event["data"]["record_type"] == "event"
            assert event["meta"] == {"attempt": 1, "delivered_to": f"{receiver.url}/cc?attempt_id=att-2"}
            payload = event["data"]["payload"]
            assert payload["call_control_id"] == data["call_control_id"]
            assert payload["call_leg_id"] == data["call_leg_id"]
            assert payload["call_session_id"] == data["call_session_id"]
            assert payload["connection_id"] == "cc-1"
            assert payload["client_state"] == "c3RhdGU="
        hangup = events[2]["data"]["payload"]
        assert hangup["hangup_cause"] == "normal_clearing"
        assert hangup["start_time"] and hangup["end_time"]

        log = (await client.get("/_simulator/calls")).json()["data"]
        assert [(e["command_id"], e["duplicate"]) for e in log[:2]] == [("cmd-1", False), ("cmd-1", True)]
        assert log[0]["provider_id"] == log[1]["provider_id"] == data["call_control_id"]
        assert log[0]["attempt_id"] == "att-2"


async def test_call_control_no_answer_has_no_answered_event(receiver: Receiver) -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550004444": ["no-answer"]}})
        await client.post("/v2/calls", json=dial_body("+15550004444", f"{receiver.url}/na"))
        await eventually(lambda: len(receiver.on("/na")) == 2)
        events = [r.json()["data"] for r in receiver.on("/na")]
        assert [e["event_type"] for e in events] == ["call.initiated", "call.hangup"]
        assert events[1]["payload"]["hangup_cause"] == "timeout"


async def test_webhook_retried_after_error(receiver: Receiver) -> None:
    receiver.fail_next = 1
    async with simulator() as client:
        await client.post("/v2/calls", json=dial_body("+15550005555", f"{receiver.url}/retry"))
        await eventually(lambda: len(receiver.on("/retry")) == 5)
        events = [r.json() for r in receiver.on("/retry")]
        assert [(e["data"]["event_type"], e["meta"]["attempt"]) for e in events] == [
            ("call.initiated", 1),
            ("call.initiated", 2),
            ("call.answered", 1),
            ("call.hangup", 1),
            ("call.conversation.ended", 1),
        ]
        assert events[0]["data"]["id"] == events[1]["data"]["id"]
        for request in receiver.on("/retry"):
            assert_signed(request)


async def test_get_unknown_call_is_404() -> None:
    async with simulator() as client:
        response = await client.get("/v2/calls/v3:nope")
        assert response.status_code == 404
        assert response.json()["errors"][0]["code"] == "10005"


# -- Messages -------------------------------------------------------------------------------------------


async def test_message_idempotency_key_dedupes(receiver: Receiver) -> None:
    async with simulator() as client:
        body = {"from": "+15550000000", "to": "+15550006666", "text": "hi", "webhook_url": f"{receiver.url}/sms"}
        headers = {"Idempotency-Key": "event-1:attempt-1"}
        first = await client.post("/v2/messages", json=body, headers=headers)
        second = await client.post("/v2/messages", json=body, headers=headers)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        message = first.json()["data"]
        assert message["record_type"] == "message"
        assert message["to"] == [{"phone_number": "+15550006666", "status": "queued"}]
        assert message["from"] == {"phone_number": "+15550000000"}
        assert message["errors"] == []

        await eventually(lambda: len(receiver.on("/sms")) >= 2)
        await client.post("/v2/messages", json={**body, "webhook_url": f"{receiver.url}/barrier"})
        await eventually(lambda: len(receiver.on("/barrier")) == 2)

        events = [r.json()["data"] for r in receiver.on("/sms")]
        assert [e["event_type"] for e in events] == ["message.sent", "message.finalized"]
        assert [e["payload"]["to"][0]["status"] for e in events] == ["sent", "delivered"]
        assert all(e["payload"]["id"] == message["id"] for e in events)
        for request in receiver.on("/sms"):
            assert_signed(request)

        log = (await client.get("/_simulator/messages")).json()["data"]
        assert [e["duplicate"] for e in log] == [False, True, False]
        assert log[1]["headers"]["idempotency-key"] == "event-1:attempt-1"
        assert log[1]["provider_id"] == message["id"]


async def test_message_scripted_failure(receiver: Receiver) -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550007777": ["delivery_failed"]}})
        body = {"from": "+15550000000", "to": "+15550007777", "text": "hi", "webhook_url": f"{receiver.url}/f"}
        await client.post("/v2/messages", json=body)
        await eventually(lambda: len(receiver.on("/f")) == 2)
        final = receiver.on("/f")[1].json()["data"]
        assert final["event_type"] == "message.finalized"
        assert final["payload"]["to"][0]["status"] == "delivery_failed"


# -- Scripts and error injection ------------------------------------------------------------------------


async def test_http_429_places_no_call(receiver: Receiver) -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550008888": ["http_429", "completed"]}})
        rejected = await client.post(TEXML, json=texml_body("+15550008888", f"{receiver.url}/r?attempt_id=a"))
        assert rejected.status_code == 429
        assert rejected.json() == {"errors": [{"code": "90103", "title": "Too many dials per second"}]}

        accepted = await client.post(TEXML, json=texml_body("+15550008888", f"{receiver.url}/r?attempt_id=b"))
        assert accepted.status_code == 200
        await eventually(lambda: len(receiver.on("/r")) == 4)
        # Every callback belongs to the second, accepted call: the rejected one placed nothing.
        assert {r.path for r in receiver.on("/r")} == {"/r?attempt_id=b"}

        log = (await client.get("/_simulator/calls")).json()["data"]
        assert [(e["attempt_id"], e["outcome"], e["status_code"]) for e in log] == [
            ("a", "http_429", 429),
            ("b", "completed", 200),
        ]
        assert log[0]["provider_id"] is None


async def test_http_503_and_422_injection() -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550001000": ["http_503", "http_422"]}})
        body = dial_body("+15550001000", "http://127.0.0.1:9/unused", command_id="cmd-x")
        assert (await client.post("/v2/calls", json=body)).status_code == 503
        invalid = await client.post("/v2/calls", json=body)
        assert invalid.status_code == 422
        assert invalid.json()["errors"][0]["code"] == "10016"
        # A rejected dial does not burn its command_id: the retry is placed.
        assert (await client.post("/v2/calls", json=body)).status_code == 200
        log = (await client.get("/_simulator/calls")).json()["data"]
        assert [e["outcome"] for e in log] == ["http_503", "http_422", "completed"]
        assert [e["duplicate"] for e in log] == [False, False, False]


async def test_timeout_holds_the_answer_but_places_the_call(receiver: Receiver) -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550001001": ["timeout"]}})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                client.post(TEXML, json=texml_body("+15550001001", f"{receiver.url}/slow")), timeout=0.5
            )
        await eventually(lambda: len(receiver.on("/slow")) == 4)
        assert receiver.on("/slow")[-1].form()["CallStatus"] == "completed"
        entry = (await client.get("/_simulator/calls")).json()["data"][0]
        assert entry["outcome"] == "timeout"
        assert entry["provider_id"] == receiver.on("/slow")[0].form()["CallSid"]


async def test_script_pops_then_falls_back_to_default(receiver: Receiver) -> None:
    async with simulator() as client:
        script = {"targets": {"+15550001111": ["busy", "no-answer"]}, "default": "failed"}
        assert (await client.post("/_simulator/script", json=script)).status_code == 200
        for _ in range(3):
            await client.post("/v2/calls", json=dial_body("+15550001111", f"{receiver.url}/pop"))
        await client.post("/v2/calls", json=dial_body("+15550002222", f"{receiver.url}/pop"))
        log = (await client.get("/_simulator/calls")).json()["data"]
        assert [e["outcome"] for e in log] == ["busy", "no-answer", "failed", "failed"]

        await eventually(lambda: sum(r.json()["data"]["event_type"] == "call.hangup" for r in receiver.on("/pop")) == 4)
        causes = {
            r.json()["data"]["payload"]["call_control_id"]: r.json()["data"]["payload"]["hangup_cause"]
            for r in receiver.on("/pop")
            if r.json()["data"]["event_type"] == "call.hangup"
        }
        assert [causes[e["provider_id"]] for e in log] == ["user_busy", "timeout", "call_rejected", "call_rejected"]


async def test_mix_draws_outcomes_for_unscripted_targets() -> None:
    async with simulator(fast_config(mix={"busy": 1.0}, seed=7)) as client:
        await client.post("/v2/calls", json=dial_body("+15550001111", "http://127.0.0.1:9/unused"))
        await client.post("/_simulator/script", json={"mix": {"no-answer": 1}})
        await client.post("/v2/calls", json=dial_body("+15550001111", "http://127.0.0.1:9/unused"))
        log = (await client.get("/_simulator/calls")).json()["data"]
        assert [e["outcome"] for e in log] == ["busy", "no-answer"]


async def test_unknown_outcome_is_rejected_by_name() -> None:
    async with simulator() as client:
        response = await client.post("/_simulator/script", json={"targets": {"+15550001111": ["busy", "ghosted"]}})
        assert response.status_code == 400
        assert "ghosted" in response.json()["errors"][0]["detail"]
        response = await client.post("/_simulator/script", json={"default": "vanished"})
        assert response.status_code == 400
        assert "vanished" in response.json()["errors"][0]["detail"]


async def test_reset_clears_logs_and_script() -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550001111": ["http_429"]}})
        await client.post(TEXML, json=texml_body("+15550002222", None))
        assert (await client.post("/_simulator/reset")).status_code == 200
        assert (await client.get("/_simulator/calls")).json() == {"data": []}
        assert (await client.post(TEXML, json=texml_body("+15550001111", None))).status_code == 200


# -- Control endpoints and auth -------------------------------------------------------------------------


async def test_public_key_and_health() -> None:
    async with simulator() as client:
        assert (await client.get("/_simulator/public-key")).json() == {"public_key": public_key_b64(KEY)}
        assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_private_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    other = Ed25519PrivateKey.generate()
    monkeypatch.setenv("CAMPAIGNS_SIMULATOR_PRIVATE_KEY", private_key_b64(other))
    async with simulator(fast_config(private_key_b64=None)) as client:
        assert (await client.get("/_simulator/public-key")).json() == {"public_key": public_key_b64(other)}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}])
async def test_v2_requires_bearer_token(headers: dict[str, str]) -> None:
    async with simulator() as client:
        client.headers.pop("Authorization")
        for method, path, body in [
            ("POST", TEXML, texml_body("+15550001111", None)),
            ("POST", "/v2/calls", dial_body("+15550001111", "http://127.0.0.1:9/unused")),
            ("POST", "/v2/messages", {"from": "+15550000000", "to": "+15550001111", "text": "hi"}),
            ("GET", "/v2/calls/v3:x", None),
        ]:
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, path
            error = response.json()["errors"][0]
            assert (error["code"], error["title"]) == ("10009", "Authentication failed")
        log = (await client.get("/_simulator/calls")).json()["data"]
        assert [e["status_code"] for e in log] == [401, 401]
        assert all(e["provider_id"] is None for e in log)
