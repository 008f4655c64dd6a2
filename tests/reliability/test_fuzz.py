"""Generated input against the API (schemathesis, from the app's OpenAPI schema) and the parsers (hypothesis).

No request may get a 5xx or raise out of the app; the parsers may only raise their documented errors.
CI runs a small number of examples per operation; ``CHAOS_FULL=1`` runs many more.
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from campaigns.importing import CsvFileError, ParsedRow, RowError, open_call_list
from campaigns.telephony import callbacks as webhooks
from campaigns.telephony.signatures import public_key_b64
from tests.reliability.stack import FULL
from worker.api import create_app
from worker.runtime import Runtime

pytestmark = pytest.mark.db

TOKEN = "fuzz-token"
API_EXAMPLES = 150 if FULL else 12
PARSER_EXAMPLES = 3000 if FULL else 300


def test_api_never_answers_5xx(runtime: Runtime) -> None:
    """Every operation of the OpenAPI schema, with generated parameters and bodies, authorized."""
    rt = Runtime(
        settings=runtime.settings.model_copy(
            update={"api_token": TOKEN, "telnyx_public_key": public_key_b64(Ed25519PrivateKey.generate())}
        ),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(rt, enqueue_import=lambda _id: None))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 10
    calls = {"n": 0}
    for operation in operations:

        @settings(max_examples=API_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            calls["n"] += 1
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
            case.validate_response(response, checks=[not_a_server_error])

        check()
    print(f"\nschemathesis: {len(operations)} operations, {calls['n']} generated requests, no 5xx")


TEXML_KEYS = ["CallSid", "CallControlId", "CallStatus", "SequenceNumber", "CallDuration", "To", "From"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=PARSER_EXAMPLES, deadline=None)
@given(
    form=st.dictionaries(st.sampled_from(TEXML_KEYS) | st.text(max_size=12), st.text(max_size=40), max_size=8),
    hint=st.none() | st.text(max_size=40) | st.uuids().map(str),
)
def test_texml_parser_only_rejects_cleanly(form: dict[str, str], hint: str | None) -> None:
    try:
        callback = webhooks.parse_texml_status(form, hint)
    except webhooks.WebhookRejected:
        return
    assert callback.provider_key and callback.status


@settings(max_examples=PARSER_EXAMPLES, deadline=None)
@given(
    data=st.fixed_dictionaries(
        {},
        optional={
            "data": st.fixed_dictionaries(
                {},
                optional={
                    "event_type": st.sampled_from(["call.initiated", "call.answered", "call.hangup",
                                                   "message.sent", "message.finalized", "message.received"])
                    | st.text(max_size=12),
                    "id": st.text(max_size=12) | st.integers(),
                    "payload": st.dictionaries(st.sampled_from(["to", "from", "id", "hangup_cause", "client_state",
                                                                "text", "errors", "call_control_id"])
                                               | st.text(max_size=8), json_values, max_size=6),
                },
            )
            | json_values
        },
    ),
    hint=st.none() | st.text(max_size=40) | st.uuids().map(str),
)  # fmt: skip
# Found by the full-size run: a message webhook whose payload.errors was not a list raised TypeError (a 500).
@example(data={"data": {"event_type": "message.sent", "payload": {"errors": True}}}, hint=None)
def test_json_webhook_parser_only_rejects_cleanly(data: dict[str, Any], hint: str | None) -> None:
    raw = json.loads(json.dumps(data))  # what the API hands over: plain JSON
    try:
        callback = webhooks.parse_json_event(raw, hint)
    except (webhooks.WebhookRejected, ValueError):
        return
    assert callback.provider_key


@settings(max_examples=PARSER_EXAMPLES, deadline=None)
@given(
    header=st.lists(st.sampled_from(["phone", "timezone", "state", "scheduled_at", "text", "metadata.x", "name"])
                    | st.text(max_size=10), min_size=1, max_size=6),
    rows=st.lists(st.lists(st.text(max_size=24), max_size=7), max_size=8),
    delimiter=st.sampled_from([",", ";", "\t"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    garbage=st.binary(max_size=16),
)  # fmt: skip
def test_csv_parser_only_rejects_cleanly(
    header: list[str], rows: list[list[str]], delimiter: str, encoding: str, garbage: bytes
) -> None:
    text = "\n".join(delimiter.join(cells) for cells in [header, *rows])
    for data in (text.encode(encoding, errors="replace"), text.encode("utf-8") + garbage):
        try:
            _layout, items = open_call_list(io.BytesIO(data))
            for item in items:
                assert isinstance(item, ParsedRow | RowError)
                if isinstance(item, RowError):
                    assert item.reason
        except CsvFileError as exc:
            assert str(exc)


HUGE_PAGE = "2305843009129807382"  # found by schemathesis: (page - 1) * size overflowed PostgreSQL's bigint OFFSET


@pytest.mark.parametrize(
    "path",
    [
        "/v2/ai/assistants/a1/scheduled_events",
        "/v1/campaigns",
        f"/v1/campaigns/{uuid.uuid4()}/events",
        "/v1/suppressions",
        "/v1/recurring",
    ],
)
def test_absurd_page_number_is_a_400_not_a_500(runtime: Runtime, path: str) -> None:
    rt = Runtime(settings=runtime.settings.model_copy(update={"api_token": TOKEN}), clock=runtime.clock,
                 sessions=runtime.sessions, providers=runtime.providers)  # fmt: skip
    with TestClient(create_app(rt, enqueue_import=lambda _id: None)) as client:
        response = client.get(
            path, params={"page[number]": HUGE_PAGE, "page[size]": "5"}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["source"]["pointer"] == "/page[number]"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v1/suppressions/import", {"params": {"note": "\x00"}, "content": b"+12125550100\n"}),
        ("POST", "/v1/suppressions", {"json": {"phone_number": "+12125550100", "note": "a\x00b"}}),
    ],
)
def test_nul_in_a_note_is_a_400_not_a_500(runtime: Runtime, method: str, path: str, kwargs: dict[str, Any]) -> None:
    """Found by schemathesis: PostgreSQL text cannot hold NUL, and the note went to the database unchecked."""
    rt = Runtime(settings=runtime.settings.model_copy(update={"api_token": TOKEN}), clock=runtime.clock,
                 sessions=runtime.sessions, providers=runtime.providers)  # fmt: skip
    with TestClient(create_app(rt, enqueue_import=lambda _id: None)) as client:
        response = client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["source"]["pointer"] == "/note"
