"""The Telnyx simulator (a test double): request/response in-process, callbacks to a real local receiver."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from campaigns.telephony.signatures import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    load_public_key,
    private_key_b64,
    public_key_b64,
    verify,
)
from worker.simulator import SimulatorConfig, create_app, parse_mix

pytestmark = pytest.mark.anyio

KEY = Ed25519PrivateKey.generate()
AUTH = {"Authorization": "Bearer test-key"}
TEXML = "/v2/texml/ai_calls/texml-app-1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- a real HTTP receiver on 127.0.0.1 ------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path_prefix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with state.lock:
                state.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                failing = state.fail_next > 0
                state.fail_next -= int(failing)
            self.send_response(500 if failing else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (yielding to the simulator's tasks) until true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)


def assert_signed(request: Received) -> None:
    verify(
        load_public_key(public_key_b64(KEY)),
        signature=request.headers.get(SIGNATURE_HEADER),
        timestamp=request.headers.get(TIMESTAMP_HEADER),
        body=request.body,
        real_now=datetime.now(UTC),
    )


def fast_config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "ring_delay": 0.01,
        "talk_delay": 0.01,
        "private_key_b64": private_key_b64(KEY),
        "response_delay_on_timeout": 5.0,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


@asynccontextmanager
async def simulator(config: SimulatorConfig | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config or fast_config())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim", headers=AUTH) as client:
            yield client


def texml_body(to: str, callback: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"From": "+15550000000", "To": to, "AIAssistantId": "assistant-1"}
    if callback is not None:
        body["StatusCallback"] = callback
    return body


def dial_body(to: str, webhook_url: str, command_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "connection_id": "cc-1",
        "from": "+15550000000",
        "to": to,
        "webhook_url": webhook_url,
        "client_state": "c3RhdGU=",
        "assistant": {"id": "assistant-1", "dynamic_variables": {"name": "Ada"}},
    }
    if command_id is not None:
        body["command_id"] = command_id
    return body


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

        await eventually(lambda: any(r.json()["data"]["event_type"] == "call.hangup" for r in receiver.on("/cc")))
        # A later, unrelated dial acts as a barrier: once its hangup arrived, nothing else is in flight.
        await client.post("/v2/calls", json=dial_body("+15550009999", f"{receiver.url}/barrier"))
        await eventually(lambda: len(receiver.on("/barrier")) == 3)

        events = [r.json() for r in receiver.on("/cc")]
        assert [e["data"]["event_type"] for e in events] == ["call.initiated", "call.answered", "call.hangup"]
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
        await eventually(lambda: len(receiver.on("/retry")) == 4)
        events = [r.json() for r in receiver.on("/retry")]
        assert [(e["data"]["event_type"], e["meta"]["attempt"]) for e in events] == [
            ("call.initiated", 1),
            ("call.initiated", 2),
            ("call.answered", 1),
            ("call.hangup", 1),
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


async def test_http_500_and_422_injection() -> None:
    async with simulator() as client:
        await client.post("/_simulator/script", json={"targets": {"+15550001000": ["http_500", "http_422"]}})
        body = dial_body("+15550001000", "http://127.0.0.1:9/unused", command_id="cmd-x")
        assert (await client.post("/v2/calls", json=body)).status_code == 503
        invalid = await client.post("/v2/calls", json=body)
        assert invalid.status_code == 422
        assert invalid.json()["errors"][0]["code"] == "10016"
        # A rejected dial does not burn its command_id: the retry is placed.
        assert (await client.post("/v2/calls", json=body)).status_code == 200
        log = (await client.get("/_simulator/calls")).json()["data"]
        assert [e["outcome"] for e in log] == ["http_500", "http_422", "completed"]
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


# -- parse_mix ------------------------------------------------------------------------------------------


def test_parse_mix_valid() -> None:
    assert parse_mix("completed=0.6, busy=0.2,no-answer=0.2") == {
        "completed": 0.6,
        "busy": 0.2,
        "no-answer": 0.2,
    }


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "empty"),
        ("completed", "'completed'"),
        ("completed=0.5,,busy=0.5", "item 2"),
        ("completed=lots", "'lots'"),
        ("completed=0.5,ghosted=0.5", "'ghosted'"),
        ("completed=-1", "'completed'"),
        ("busy=0.5,busy=0.5", "'busy'"),
        ("busy=0,completed=0", "zero"),
        ("=1", "'=1'"),
    ],
)
def test_parse_mix_errors_name_the_bad_part(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_mix(text)


def test_create_app_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="ghosted"):
        create_app(fast_config(mix={"ghosted": 1.0}))
    with pytest.raises(ValueError, match="private_key_b64"):
        create_app(fast_config(private_key_b64="not-a-key"))


async def test_callbacks_beyond_the_in_flight_limit_wait_and_all_arrive() -> None:
    """A slow receiver never sees more than the in-flight limit at once, and every queued callback still arrives."""
    from worker.simulator import _CALLBACK_CONCURRENCY

    calls = _CALLBACK_CONCURRENCY * 2
    lock = threading.Lock()
    seen = {"now": 0, "max": 0, "total": 0}

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                seen["now"] += 1
                seen["max"] = max(seen["max"], seen["now"])
            time.sleep(0.02)  # a slow receiver (not waiting for work): keeps requests overlapping
            with lock:
                seen["now"] -= 1
                seen["total"] += 1
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # every connection the simulator opens is accepted, none refused

    server = Server(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/slow"
    try:
        async with simulator(fast_config(ring_delay=0.0, talk_delay=0.0)) as client:
            dials = [client.post("/v2/calls", json=dial_body(f"+1555100{i:04d}", url)) for i in range(calls)]
            assert {r.status_code for r in await asyncio.gather(*dials)} == {200}
            await eventually(lambda: seen["total"] == calls * 3, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert seen["max"] <= _CALLBACK_CONCURRENCY
    assert seen["max"] > 1  # callbacks do overlap: the limit, not the receiver, bounded them
