"""``/openapi.json`` documents every answer: the body of each success, the Telnyx error envelope of each error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient

from campaigns.events import TELNYX_CALL_STATUSES
from campaigns.states import TELNYX_EVENT_STATUSES
from worker.api import create_app
from worker.api.schemas.events import TelnyxCallStatus, TelnyxEventStatus

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    with TestClient(create_app()) as client:  # no database needed: the schema is built from the routes
        response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                yield f"{method.upper()} {path}", item[method]


def refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_every_operation_has_a_response_schema_for_its_success_status(schema: dict[str, Any]) -> None:
    missing = []
    for name, operation in operations(schema):
        successes = {status: answer for status, answer in operation["responses"].items() if status.startswith("2")}
        assert successes, f"{name} documents no success"
        for status, answer in successes.items():
            if status == "204":
                assert "content" not in answer, f"{name}: a 204 has no body"
                continue
            bodies = answer.get("content", {})
            if not bodies or not all(body.get("schema") for body in bodies.values()):
                missing.append(f"{name} {status}")
            for body in bodies.values():
                assert body["schema"] != {}, f"{name} {status}: an empty schema says nothing"
    assert missing == []


def test_every_error_is_the_telnyx_envelope(schema: dict[str, Any]) -> None:
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for name, operation in operations(schema):
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")) and not (name == "GET /readyz" and status == "503"):
                assert answer["content"]["application/json"]["schema"] == envelope, f"{name} {status}"
    errors = schema["components"]["schemas"]["ErrorObject"]
    assert set(errors["properties"]) == {"code", "title", "detail", "source"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # validation errors are our 400s


def test_the_telnyx_routes_document_their_validation_and_lookups(schema: dict[str, Any]) -> None:
    events = "/v2/ai/assistants/{assistant_id}/scheduled_events"
    documented = {name: set(op["responses"]) for name, op in operations(schema)}
    assert documented[f"POST {events}"] == {"201", "400", "401", "422"}
    assert documented[f"GET {events}"] == {"200", "400", "401"}
    assert documented[f"GET {events}/{{event_id}}"] == {"200", "400", "401", "404"}
    assert documented[f"DELETE {events}/{{event_id}}"] == {"204", "400", "401", "404"}
    create = schema["paths"][events]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScheduledEventCreate"
    }
    assert "idempotency-key" in {p["name"] for p in create["parameters"]}


def test_every_reference_resolves(schema: dict[str, Any]) -> None:
    names = set(schema["components"]["schemas"])
    dangling = {ref for ref in refs(schema) if ref.removeprefix("#/components/schemas/") not in names}
    assert dangling == set()


def test_the_documented_statuses_are_telnyxs(schema: dict[str, Any]) -> None:
    assert set(get_args(TelnyxEventStatus)) == TELNYX_EVENT_STATUSES
    assert set(get_args(TelnyxCallStatus)) == TELNYX_CALL_STATUSES
    components = schema["components"]["schemas"]
    for event in ("PhoneCallEvent", "SmsEvent"):
        assert set(components[event]["properties"]["status"]["enum"]) == TELNYX_EVENT_STATUSES
    assert "canceled" in components["EventStatus"]["enum"]  # /v1 keeps the engine's statuses


def test_the_docs_page_is_served() -> None:
    with TestClient(create_app()) as client:
        page = client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
