"""Hostile input is a 400 naming the field, never a 500, and no log line carries the numbers it held (issue 19
items 7 and 9): NUL characters, lone surrogates, 100k-deep JSON, oversized fields; a short fuzz run checks it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, StatementError

from campaigns.clock import FrozenClock
from campaigns.db import make_engine
from campaigns.telephony.signatures import public_key_b64, sign
from tests.factories import call_body
from tests.fuzzing import fuzz_derandomized, fuzz_examples
from worker.api import create_app
from worker.runtime import Runtime

EVENTS = "/v2/ai/assistants/a1/scheduled_events"
KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def client(runtime: Runtime, tmp_path: Path) -> Iterator[TestClient]:
    rt = Runtime(
        settings=runtime.settings.model_copy(
            update={"telnyx_public_key": public_key_b64(KEY), "recurring_dir": str(tmp_path)}
        ),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    with TestClient(create_app(rt), raise_server_exceptions=False) as c:
        yield c


def post_raw(client: TestClient, path: str, body: str) -> Any:
    # surrogatepass: the bytes a client sends for "\ud800" written unescaped (json.dumps escapes it as \\ud800).
    return client.post(
        path, content=body.encode("utf-8", "surrogatepass"), headers={"content-type": "application/json"}
    )


def pointers(response: Any) -> list[str]:
    return [e.get("source", {}).get("pointer") for e in response.json()["errors"]]


def test_unstorable_characters_are_400s_naming_the_field(client: TestClient, clock: FrozenClock) -> None:
    now = clock.now()
    cases: list[tuple[str, dict[str, Any], str]] = [
        (EVENTS, call_body(now, dynamic_variables={"name": "Ana\ud800"}), "/dynamic_variables/name"),
        (EVENTS, call_body(now, dynamic_variables={"\udc00": "x"}), "/dynamic_variables/\\udc00"),
        (EVENTS, call_body(now, conversation_metadata={"id": "\udfff"}), "/conversation_metadata/id"),
        (EVENTS, call_body(now, telnyx_end_user_target="sip:\ud800@sip.example"), "/telnyx_end_user_target"),
        (EVENTS, call_body(now, telnyx_end_user_target="+1212555\u00000147"), "/telnyx_end_user_target"),
        ("/v1/suppressions", {"phone_number": "+12125550147", "note": "\ud800"}, "/note"),
        ("/v1/recurring", {"name": "a\ud800", "source": "*.csv", "cron": "0 7 * * *"}, "/name"),
    ]
    for path, body, pointer in cases:
        r = post_raw(client, path, json.dumps(body))
        assert r.status_code == 400, (body, r.text)
        assert pointer in pointers(r), (body, r.text)
    r = client.post("/v2/ai/assistants/a%001/scheduled_events", json=call_body(now))
    assert r.status_code == 400 and pointers(r) == ["/assistant_id"]


def test_100k_deep_json_is_a_400_on_create_and_on_a_signed_webhook(client: TestClient) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    r = post_raw(client, EVENTS, deep[:200_000])
    assert r.status_code == 400 and "nested too deeply" in r.text
    raw = ('{"data": ' + deep + "}").encode()
    stamp = str(int(time.time()))
    signed = {"telnyx-signature-ed25519": sign(KEY, stamp, raw), "telnyx-timestamp": stamp}
    r = client.post("/webhooks/telnyx", content=raw, headers={**signed, "content-type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.text


def test_field_limits_are_400s_naming_the_field(client: TestClient, clock: FrozenClock) -> None:
    now = clock.now()
    cases = [
        (call_body(now, telnyx_conversation_channel="sms_chat", text="x" * 3826), "/text"),
        (call_body(now, dynamic_variables={f"v{i}": "x" for i in range(101)}), "/dynamic_variables"),
        (call_body(now, dynamic_variables={"notes": "x" * 4097}), "/dynamic_variables/notes"),
        (call_body(now, dynamic_variables={"k" * 129: "x"}), "/dynamic_variables/" + "k" * 128),
        (call_body(now, conversation_metadata={"ref": "x" * 1025}), "/conversation_metadata/ref"),
    ]
    for body, pointer in cases:
        r = client.post(EVENTS, json=body)
        assert r.status_code == 400, r.text
        assert pointers(r) == [pointer], r.text
    ok = call_body(now, dynamic_variables={f"v{i}": "x" * 1000 for i in range(100)})
    assert client.post(EVENTS, json=ok).status_code == 201
    assert (
        client.post(EVENTS, json=call_body(now, telnyx_conversation_channel="sms_chat", text="x" * 3825)).status_code
        == 201
    )


def test_a_failed_statement_carries_no_parameters(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn, pytest.raises((DBAPIError, StatementError)) as caught:
            conn.execute(text("SELECT CAST(:phone AS text), 1 / 0"), {"phone": "+12125550147"})
    finally:
        engine.dispose()
    assert "+12125550147" not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)


# --- a short fuzz run: no 5xx, and none of the numbers it used in any log line --------------------------------

HOSTILE = st.sampled_from(["\x00", "\ud800", "\udfff", "[" * 2000, "x" * 5000, "", "\u202e", "%00", "{{name}}"])
NUMBERS = st.integers(min_value=2_000_000, max_value=9_999_999).map(lambda n: f"+1212{n}")


def hostile_text() -> st.SearchStrategy[str]:
    return st.lists(st.one_of(HOSTILE, st.text(max_size=5)), max_size=4).map("".join)


@st.composite
def create_bodies(draw: st.DrawFn, now_iso: str) -> tuple[str, dict[str, Any]]:
    number = draw(NUMBERS)
    body: dict[str, Any] = {
        "telnyx_conversation_channel": draw(st.sampled_from(["phone_call", "sms_chat"])),
        "telnyx_end_user_target": number + draw(st.sampled_from(["", "\x00", "\ud800"])),
        "telnyx_agent_target": "+15553456789",
        "scheduled_at_fixed_datetime": now_iso,
        "text": draw(hostile_text()),
        "dynamic_variables": draw(
            st.dictionaries(hostile_text(), st.one_of(hostile_text(), st.just(number)), max_size=3)
        ),
        "conversation_metadata": {"phone": number},
    }
    return number, body


def test_fuzzed_creates_and_webhooks_give_no_5xx_and_log_no_numbers(
    client: TestClient, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    used: list[str] = []
    answers: list[int] = []
    now_iso = clock.now().replace(year=clock.now().year + 1).isoformat()

    @settings(max_examples=fuzz_examples(60), derandomize=fuzz_derandomized(), deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(case=create_bodies(now_iso), assistant=hostile_text())
    def run(case: tuple[str, dict[str, Any]], assistant: str) -> None:
        number, body = case
        used.append(number)
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        for path in (
            EVENTS,
            "/v2/ai/assistants/a" + assistant.encode("utf-8", "surrogatepass").hex() + "/scheduled_events",
        ):
            answers.append(client.post(path, content=raw, headers={"content-type": "application/json"}).status_code)
        stamp = str(int(time.time()))
        hook = json.dumps(
            {"data": {"event_type": "message.received", "id": number, "payload": body}}, ensure_ascii=False
        )
        signed_raw = hook.encode("utf-8", "surrogatepass")
        headers = {"telnyx-signature-ed25519": sign(KEY, stamp, signed_raw), "telnyx-timestamp": stamp,
                   "content-type": "application/json"}  # fmt: skip
        answers.append(client.post("/webhooks/telnyx", content=signed_raw, headers=headers).status_code)

    with caplog.at_level(logging.DEBUG):
        run()
    assert used and answers
    assert all(status < 500 for status in answers), sorted(set(answers))
    logged = caplog.text
    leaked = [n for n in used if n in logged or n[1:] in logged]
    assert not leaked, f"numbers in the logs: {leaked[:3]}"
