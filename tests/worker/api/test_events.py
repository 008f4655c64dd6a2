"""The Telnyx-compatible scheduled-events API: validation, idempotency, listing, deletion."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from campaigns import lifecycle
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.models import ScheduledEvent
from tests.factories import call_body, sms_body
from worker.api import create_app
from worker.runtime import Runtime

BASE = "/v2/ai/assistants/a1/scheduled_events"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as c:
        yield c


def _pointer(response: Any) -> list[str]:
    return [e["source"]["pointer"] for e in response.json()["errors"]]


def test_create_returns_the_bare_event(client: TestClient, clock: FrozenClock) -> None:
    body = call_body(
        clock.now(),
        max_retries_client_errors=3,
        retry_interval_secs=300,
        conversation_metadata={"campaign": "renewal-q2", "customer_id": 42, "vip": True},
        dynamic_variables={"name": "Ana"},
    )
    r = client.post(BASE, json=body)
    assert r.status_code == 201, r.text
    event = r.json()
    assert event["status"] == "pending"
    assert event["assistant_id"] == "a1"
    assert event["call_attempts"] == []
    assert event["retry_count"] == 0
    assert event["max_retries_client_errors"] == 3 and event["retry_interval_secs"] == 300
    assert event["conversation_metadata"] == {"campaign": "renewal-q2", "customer_id": 42, "vip": True}
    assert event["scheduled_at_fixed_datetime"] == "2026-05-07T14:35:00Z"
    got = client.get(f"{BASE}/{event['scheduled_event_id']}")
    assert got.status_code == 200 and got.json() == event


def test_sms_event_has_text_and_no_call_fields(client: TestClient, clock: FrozenClock) -> None:
    r = client.post(BASE, json=sms_body(clock.now()))
    assert r.status_code == 201, r.text
    event = r.json()
    assert event["text"] == "Reminder: tomorrow 10 AM"
    assert "call_attempts" not in event and "max_retries_client_errors" not in event


def test_sms_text_is_rendered_with_the_events_dynamic_variables(client: TestClient, clock: FrozenClock) -> None:
    """Telnyx documents dynamic_variables as referenced in the assistant's messages with {{variable_name}}: the
    text that goes out is rendered, with the system variables too (campaigns/templates.py cites the pages)."""
    body = sms_body(clock.now()) | {
        "text": "Hola {{first_name}}, te escribimos desde {{telnyx_agent_target}}",
        "dynamic_variables": {"first_name": "Lucía"},
    }
    r = client.post(BASE, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["text"] == f"Hola Lucía, te escribimos desde {body['telnyx_agent_target']}"


@pytest.mark.parametrize(
    ("variables", "named"),
    [({}, "{{first_name}}"), ({"first_name": " "}, "{{first_name}}")],
    ids=["absent", "empty"],
)
def test_sms_text_naming_a_variable_without_a_value_is_a_400(
    client: TestClient, clock: FrozenClock, variables: dict[str, str], named: str
) -> None:
    body = sms_body(clock.now()) | {"text": "Hola {{first_name}}", "dynamic_variables": variables}
    r = client.post(BASE, json=body)
    assert r.status_code == 400, r.text
    assert _pointer(r) == ["/text"] and named in r.json()["errors"][0]["detail"]


def _future(clock: FrozenClock) -> str:
    return (clock.now() + timedelta(hours=1)).isoformat()


# (overrides, pointer that must be named). `None` in overrides removes the field.
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("channel missing", {"telnyx_conversation_channel": None}, "/telnyx_conversation_channel"),
    ("channel unknown", {"telnyx_conversation_channel": "fax"}, "/telnyx_conversation_channel"),
    ("target missing", {"telnyx_end_user_target": None}, "/telnyx_end_user_target"),
    ("target not E.164", {"telnyx_end_user_target": "5551234567"}, "/telnyx_end_user_target"),
    ("target with letters", {"telnyx_end_user_target": "+1555CALLNOW"}, "/telnyx_end_user_target"),
    ("target too long", {"telnyx_end_user_target": "+1234567890123456"}, "/telnyx_end_user_target"),
    ("target not a string", {"telnyx_end_user_target": 15551234567}, "/telnyx_end_user_target"),
    ("agent missing", {"telnyx_agent_target": None}, "/telnyx_agent_target"),
    ("agent empty", {"telnyx_agent_target": ""}, "/telnyx_agent_target"),
    ("time missing", {"scheduled_at_fixed_datetime": None}, "/scheduled_at_fixed_datetime"),
    ("time not ISO", {"scheduled_at_fixed_datetime": "tomorrow at 3"}, "/scheduled_at_fixed_datetime"),
    ("time in the past", {"scheduled_at_fixed_datetime": "2026-05-07T14:00:00Z"}, "/scheduled_at_fixed_datetime"),
    ("time now", {"scheduled_at_fixed_datetime": "2026-05-07T14:30:00Z"}, "/scheduled_at_fixed_datetime"),
    ("retries above 10", {"max_retries_client_errors": 11, "retry_interval_secs": 60}, "/max_retries_client_errors"),
    ("retries negative", {"max_retries_client_errors": -1}, "/max_retries_client_errors"),
    ("retries not int", {"max_retries_client_errors": "3", "retry_interval_secs": 60}, "/max_retries_client_errors"),
    ("retries bool", {"max_retries_client_errors": True, "retry_interval_secs": 60}, "/max_retries_client_errors"),
    ("interval below 60", {"max_retries_client_errors": 1, "retry_interval_secs": 59}, "/retry_interval_secs"),
    ("interval above 86400", {"max_retries_client_errors": 1, "retry_interval_secs": 86401}, "/retry_interval_secs"),
    ("interval required with retries", {"max_retries_client_errors": 2}, "/retry_interval_secs"),
    ("interval without retries", {"retry_interval_secs": 300}, "/retry_interval_secs"),
    (
        "interval with zero retries",
        {"max_retries_client_errors": 0, "retry_interval_secs": 300},
        "/retry_interval_secs",
    ),
    ("metadata float", {"conversation_metadata": {"score": 1.5}}, "/conversation_metadata/score"),
    ("metadata null", {"conversation_metadata": {"x": None}}, "/conversation_metadata/x"),
    ("metadata nested", {"conversation_metadata": {"x": {"y": 1}}}, "/conversation_metadata/x"),
    ("metadata not object", {"conversation_metadata": ["a"]}, "/conversation_metadata"),
    ("variables int", {"dynamic_variables": {"age": 42}}, "/dynamic_variables/age"),
    ("variables not object", {"dynamic_variables": "name=Ana"}, "/dynamic_variables"),
    ("unknown field", {"colour": "blue"}, "/colour"),
    ("bad sip region", {"call_settings": {"sip_region": "Mars"}}, "/call_settings/sip_region"),
    ("bad timezone", {"timezone": "Mars/Olympus"}, "/timezone"),
    ("SIP URI too long", {"telnyx_end_user_target": f"sip:{'a' * 250}@example.com"}, "/telnyx_end_user_target"),
    (
        "time past the last instant",
        {"scheduled_at_fixed_datetime": "9999-12-31T23:00:00-05:00"},
        "/scheduled_at_fixed_datetime",
    ),
    ("NUL in a variable", {"dynamic_variables": {"name": "A\x00na"}}, "/dynamic_variables/name"),
    ("NUL in a metadata key", {"conversation_metadata": {"k\x00": "v"}}, "/conversation_metadata/k\x00"),
    ("NUL in call settings", {"call_settings": {"sip_region": "US", "note": ["\x00"]}}, "/call_settings/note/0"),
]

INVALID_SMS: list[tuple[str, dict[str, Any], str]] = [
    ("sms without text", {"text": None}, "/text"),
    ("sms blank text", {"text": "  "}, "/text"),
    ("sms with retries", {"max_retries_client_errors": 2}, "/max_retries_client_errors"),
    ("sms with interval", {"retry_interval_secs": 300}, "/retry_interval_secs"),
    ("sms with call settings", {"call_settings": {"sip_region": "US"}}, "/call_settings"),
]


@pytest.mark.parametrize(("case", "overrides", "pointer"), INVALID, ids=[c[0] for c in INVALID])
def test_call_validation(
    client: TestClient, clock: FrozenClock, case: str, overrides: dict[str, Any], pointer: str
) -> None:
    body = call_body(clock.now())
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    r = client.post(BASE, json=body)
    assert r.status_code == 400, r.text
    assert pointer in _pointer(r)
    error = r.json()["errors"][0]
    assert set(error) == {"code", "title", "detail", "source"}
    assert client.get(BASE).json()["meta"]["total_results"] == 0  # nothing was created


@pytest.mark.parametrize(("case", "overrides", "pointer"), INVALID_SMS, ids=[c[0] for c in INVALID_SMS])
def test_sms_validation(
    client: TestClient, clock: FrozenClock, case: str, overrides: dict[str, Any], pointer: str
) -> None:
    body = sms_body(clock.now())
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    r = client.post(BASE, json=body)
    assert r.status_code == 400, r.text
    assert pointer in _pointer(r)


VALID: list[tuple[str, dict[str, Any]]] = [
    ("docs example number", {"telnyx_end_user_target": "+15551234567"}),
    ("sip uri", {"telnyx_end_user_target": "sip:alice@example.com"}),
    ("retries 10 interval 86400", {"max_retries_client_errors": 10, "retry_interval_secs": 86400}),
    ("retries 1 interval 60", {"max_retries_client_errors": 1, "retry_interval_secs": 60}),
    ("retries 0 explicit", {"max_retries_client_errors": 0}),
    ("retries 0 interval null", {"max_retries_client_errors": 0, "retry_interval_secs": None}),
    ("offset time", {"scheduled_at_fixed_datetime": "2026-05-07T12:00:00-04:00"}),
    ("naive time is UTC", {"scheduled_at_fixed_datetime": "2026-05-07T15:00:00"}),
    ("metadata types", {"conversation_metadata": {"a": "x", "b": 1, "c": False}}),
]


@pytest.mark.parametrize(("case", "overrides"), VALID, ids=[c[0] for c in VALID])
def test_valid_requests(client: TestClient, clock: FrozenClock, case: str, overrides: dict[str, Any]) -> None:
    body = call_body(clock.now())
    body.update({k: v for k, v in overrides.items()})
    r = client.post(BASE, json=body)
    assert r.status_code == 201, r.text


def test_sms_with_zero_retry_fields_is_accepted(client: TestClient, clock: FrozenClock) -> None:
    r = client.post(BASE, json=sms_body(clock.now(), max_retries_client_errors=0, retry_interval_secs=None))
    assert r.status_code == 201, r.text


def test_every_problem_is_reported_at_once(client: TestClient) -> None:
    r = client.post(BASE, json={"telnyx_conversation_channel": "sms_chat"})
    assert r.status_code == 400
    assert set(_pointer(r)) >= {
        "/telnyx_end_user_target",
        "/telnyx_agent_target",
        "/scheduled_at_fixed_datetime",
        "/text",
    }


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b""])
def test_bad_json_is_a_400(client: TestClient, raw: bytes) -> None:
    r = client.post(BASE, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["detail"]


def test_idempotent_create(client: TestClient, clock: FrozenClock, runtime: Runtime) -> None:
    body = call_body(clock.now())
    first = client.post(BASE, json=body, headers={"Idempotency-Key": "k-1"})
    again = client.post(BASE, json=dict(reversed(list(body.items()))), headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = client.post(
        BASE, json={**body, "telnyx_end_user_target": "+15550000000"}, headers={"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 422
    assert other.json()["errors"][0]["source"]["pointer"] == "/Idempotency-Key"
    fresh = client.post(BASE, json=body, headers={"Idempotency-Key": "k-2"})
    assert fresh.status_code == 201 and fresh.json()["scheduled_event_id"] != first.json()["scheduled_event_id"]
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ScheduledEvent)) == 2


def test_an_assistant_id_that_cannot_be_stored_is_a_400(client: TestClient, clock: FrozenClock) -> None:
    for assistant in ("a" * 256, "a%00b"):
        r = client.post(f"/v2/ai/assistants/{assistant}/scheduled_events", json=call_body(clock.now()))
        assert r.status_code == 400, r.text
        assert _pointer(r) == ["/assistant_id"]


def test_a_retry_after_the_scheduled_time_gets_the_event_it_created(
    client: TestClient, clock: FrozenClock, runtime: Runtime
) -> None:
    """The response was lost and the client retries once the event's time has passed: the key answers with the
    event it created (201), not a 400 "must be in the future" that would make the client create it again."""
    body = call_body(clock.now())  # due in 5 minutes
    first = client.post(BASE, json=body, headers={"Idempotency-Key": "k-late"})
    assert first.status_code == 201
    clock.advance(600)
    assert client.post(BASE, json=body).status_code == 400  # without the key the same body is now invalid
    again = client.post(BASE, json=body, headers={"Idempotency-Key": "k-late"})
    assert (again.status_code, again.json()) == (201, first.json())
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ScheduledEvent)) == 1


def test_idempotent_create_under_concurrency(client: TestClient, clock: FrozenClock, runtime: Runtime) -> None:
    body = call_body(clock.now())
    results: list[Any] = []

    def post() -> None:
        results.append(client.post(BASE, json=body, headers={"Idempotency-Key": "race"}))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["scheduled_event_id"] for r in results}) == 1
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ScheduledEvent)) == 1


def test_list_pages_and_filters(client: TestClient, clock: FrozenClock) -> None:
    now = clock.now()
    ids = []
    for minutes in range(1, 6):
        r = client.post(
            BASE, json=call_body(now, scheduled_at_fixed_datetime=(now + timedelta(minutes=minutes)).isoformat())
        )
        ids.append(r.json()["scheduled_event_id"])
    client.post(BASE, json=sms_body(now, telnyx_end_user_target="+15550001111"))
    client.post("/v2/ai/assistants/other/scheduled_events", json=call_body(now))

    page = client.get(BASE, params={"page[number]": 2, "page[size]": 2}).json()
    assert page["meta"] == {"total_pages": 3, "total_results": 6, "page_number": 2, "page_size": 2}
    assert len(page["data"]) == 2

    calls = client.get(BASE, params={"conversation_channel": "phone_call"}).json()
    assert calls["meta"]["total_results"] == 5
    assert [e["scheduled_event_id"] for e in calls["data"]] == ids

    window = client.get(
        BASE,
        params={
            "from_date": (now + timedelta(minutes=2)).isoformat(),
            "to_date": (now + timedelta(minutes=4)).isoformat(),
        },
    ).json()
    assert [e["scheduled_event_id"] for e in window["data"] if e["telnyx_conversation_channel"] == "phone_call"] == ids[
        1:4
    ]

    by_target = client.get(BASE, params={"end_user_target": "+15550001111"}).json()
    assert [e["telnyx_conversation_channel"] for e in by_target["data"]] == ["sms_chat"]
    assert client.get(BASE, params={"status": "pending"}).json()["meta"]["total_results"] == 6
    assert client.get(BASE, params={"status": "completed"}).json()["meta"]["total_results"] == 0


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"page[size]": 0}, "/page[size]"),
        ({"page[number]": "x"}, "/page[number]"),
        ({"from_date": "yesterday"}, "/from_date"),
        ({"conversation_channel": "fax"}, "/conversation_channel"),
        ({"status": "done"}, "/status"),
    ],
)
def test_list_rejects_bad_parameters(client: TestClient, params: dict[str, Any], pointer: str) -> None:
    r = client.get(BASE, params=params)
    assert r.status_code == 400
    assert pointer in _pointer(r)


def test_retrieve_is_scoped_to_the_assistant(client: TestClient, clock: FrozenClock) -> None:
    event_id = client.post(BASE, json=call_body(clock.now())).json()["scheduled_event_id"]
    assert client.get(f"/v2/ai/assistants/someone-else/scheduled_events/{event_id}").status_code == 404
    assert client.get(f"{BASE}/not-a-uuid").status_code == 404


def test_delete_in_any_state_removes_the_event_from_the_telnyx_api(
    client: TestClient, clock: FrozenClock, runtime: Runtime
) -> None:
    """Telnyx removes a deleted event: 204 whatever its state (409 for a finished one, before), then 404 and gone
    from the list; the row stays for the campaign's export and the metrics, and a pending one is never claimed."""
    ids = {}
    for state in ("pending", "completed", "failed"):
        ids[state] = client.post(BASE, json=call_body(clock.now())).json()["scheduled_event_id"]
    with unit_of_work(runtime.sessions) as s:
        for state in ("completed", "failed"):
            s.execute(update(ScheduledEvent).where(ScheduledEvent.id == ids[state]).values(status=state))
    for event_id in ids.values():
        assert client.delete(f"{BASE}/{event_id}").status_code == 204
        gone = client.get(f"{BASE}/{event_id}")
        assert gone.status_code == 404
        assert gone.json()["errors"][0] == {
            "code": "10005",
            "title": "Resource not found",
            "detail": f"no scheduled event {event_id}",
        }
        again = client.delete(f"{BASE}/{event_id}")
        assert again.status_code == 404 and again.json()["errors"][0]["code"] == "10005"
    assert client.get(BASE).json() == {
        "data": [],
        "meta": {"total_pages": 0, "total_results": 0, "page_number": 1, "page_size": 20},
    }
    assert client.delete(f"{BASE}/00000000-0000-0000-0000-000000000000").status_code == 404

    with runtime.sessions() as s:
        rows = {str(e.id): e for e in s.scalars(select(ScheduledEvent))}
        assert {i: (rows[i].status, rows[i].deleted_at) for i in ids.values()} == {
            ids["pending"]: ("canceled", clock.now()),
            ids["completed"]: ("completed", clock.now()),
            ids["failed"]: ("failed", clock.now()),
        }
        assert rows[ids["pending"]].errors == ["canceled by request before dispatch"]
    clock.advance(3600)
    with unit_of_work(runtime.sessions) as s:
        claimed = lifecycle.claim_due_events(
            s, now=clock.now(), limit=10, lease=timedelta(minutes=2), providers=runtime.providers
        )
    assert claimed == []


def test_an_event_canceled_with_its_campaign_reads_failed_on_v2_and_canceled_on_v1(
    client: TestClient, clock: FrozenClock
) -> None:
    """Telnyx has four statuses: on /v2 a canceled campaign event is ``failed`` with an ``errors`` entry saying it
    was canceled and by whom; the campaign's own view (/v1) keeps ``canceled``."""
    settings = {"name": "c", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"}
    upload = client.post(
        "/v1/campaigns",
        files={"file": ("l.csv", b"phone\n+12125550101\n", "text/csv")},
        data={"campaign": json.dumps(settings)},
    )
    campaign_id = upload.json()["id"]
    assert client.post(f"/v1/campaigns/{campaign_id}/cancel").status_code == 200

    (v1,) = client.get(f"/v1/campaigns/{campaign_id}/events").json()["data"]
    assert v1["status"] == "canceled"
    assert v1["errors"] == ["canceled with its campaign before dispatch"]
    v2 = client.get(f"{BASE}/{v1['scheduled_event_id']}").json()
    assert v2["status"] == "failed"
    assert v2["errors"] == [
        "canceled with its campaign before dispatch",
        f"canceled with campaign {campaign_id} by an operator",
    ]
    assert {k: v for k, v in v2.items() if k not in ("status", "errors")} == {
        k: v for k, v in v1.items() if k not in ("status", "errors")
    }
    assert [e["scheduled_event_id"] for e in client.get(BASE, params={"status": "failed"}).json()["data"]] == [
        v1["scheduled_event_id"]
    ]
    assert client.get(BASE, params={"status": "canceled"}).json()["meta"]["total_results"] == 1
    assert client.get(BASE, params={"status": "pending"}).json()["meta"]["total_results"] == 0


def test_a_deleted_campaign_event_stays_in_its_campaign(client: TestClient) -> None:
    """Deleted from the Telnyx API, the event is still part of its campaign: its events, counts and export."""
    settings = {"name": "c", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"}
    upload = client.post(
        "/v1/campaigns",
        files={"file": ("l.csv", b"phone\n+12125550101\n+12125550102\n", "text/csv")},
        data={"campaign": json.dumps(settings)},
    )
    campaign_id = upload.json()["id"]
    first, second = client.get(BASE).json()["data"]
    assert client.delete(f"{BASE}/{first['scheduled_event_id']}").status_code == 204
    assert [e["scheduled_event_id"] for e in client.get(BASE).json()["data"]] == [second["scheduled_event_id"]]
    kept = client.get(f"/v1/campaigns/{campaign_id}/events").json()["data"]
    assert {e["scheduled_event_id"]: e["status"] for e in kept} == {
        first["scheduled_event_id"]: "canceled",
        second["scheduled_event_id"]: "pending",
    }
    assert client.get(f"/v1/campaigns/{campaign_id}").json()["counts"]["canceled"] == 1
    exported = client.get(f"/v1/campaigns/{campaign_id}/export.csv").text.splitlines()
    assert len(exported) == 3 and "canceled" in next(line for line in exported if "+12125550101" in line)


@pytest.mark.parametrize(
    ("method", "path", "params", "status"),
    [
        ("GET", "/v2/ai/assistants/a%00b/scheduled_events", {}, 400),
        ("GET", "/v2/ai/assistants/a%00b/scheduled_events/00000000-0000-0000-0000-000000000000", {}, 400),
        ("DELETE", "/v2/ai/assistants/a%00b/scheduled_events/00000000-0000-0000-0000-000000000000", {}, 400),
        ("GET", BASE, {"end_user_target": "+1555\x00"}, 400),
        ("GET", "/v1/recurring/a%00b", {}, 404),
        ("POST", "/v1/recurring/a%00b/run-now", {}, 404),
    ],
)
def test_values_postgresql_cannot_hold_are_refused_not_a_500(
    client: TestClient, method: str, path: str, params: dict[str, str], status: int
) -> None:
    """Text with a NUL character cannot even be compared in PostgreSQL: it used to reach a query and fail there."""
    response = client.request(method, path, params=params)
    assert response.status_code == status, response.text
    assert response.json()["errors"][0]["code"] == ("10015" if status == 400 else "10005")


def test_a_campaigns_events_reject_an_unknown_status(client: TestClient) -> None:
    settings = {"name": "c", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"}
    upload = client.post(
        "/v1/campaigns",
        files={"file": ("l.csv", b"phone\n+12125550101\n", "text/csv")},
        data={"campaign": json.dumps(settings)},
    )
    events = f"/v1/campaigns/{upload.json()['id']}/events"
    assert client.get(events, params={"status": "canceled"}).json()["meta"]["total_results"] == 0
    for bad in ("done", "pending\x00"):
        response = client.get(events, params={"status": bad})
        assert response.status_code == 400 and _pointer(response) == ["/status"]


def test_bearer_token_is_required_when_configured(runtime: Runtime, clock: FrozenClock) -> None:
    secured = Runtime(
        settings=runtime.settings.model_copy(update={"api_token": "s3cret"}),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    with TestClient(create_app(secured)) as c:
        assert c.get(BASE).status_code == 401
        assert c.get(BASE, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get(BASE, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_healthz_shows_app_time(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "time": "2026-05-07T14:30:00+00:00"}


def test_readyz_checks_database_and_redis(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "database": "ok", "redis": "ok", "provider": "ok"}  # issue 17: the key too


def test_readyz_says_the_provider_refuses_the_key(client: TestClient, runtime: Runtime) -> None:
    from campaigns.lifecycle import holds
    from campaigns.telephony import ProviderHeld

    held = ProviderHeld("401", reason="api_key", detail="provider rejected the API key (401)")
    now = runtime.clock.now()
    with unit_of_work(runtime.sessions) as s:
        holds.open_hold(s, "texml", held, now=now, probe_at=now)
    r = client.get("/readyz")
    assert r.status_code == 200  # reported, not "not ready": the api must keep taking webhooks of placed calls
    assert r.json()["provider"] == "held (texml): provider rejected the API key (401)"
