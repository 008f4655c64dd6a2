"""``/v1/suppressions`` through the HTTP app: list, add, get, delete, import; auth; campaign uploads."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from campaigns.clock import FrozenClock
from worker.api import create_app
from worker.runtime import Runtime

BASE = "/v1/suppressions"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as c:
        yield c


def test_add_get_list_delete(client: TestClient, clock: FrozenClock) -> None:
    r = client.post(BASE, json={"phone_number": "(212) 555-0147", "note": "asked by phone"})
    assert r.status_code == 201, r.text
    assert r.json() == {
        "phone_number": "+12125550147",
        "reason": "manual",
        "note": "asked by phone",
        "created_at": "2026-05-07T14:30:00Z",
    }
    again = client.post(BASE, json={"phone_number": "+12125550147", "reason": "file"})
    assert again.status_code == 200 and again.json()["reason"] == "manual"  # the existing entry is kept
    client.post(BASE, json={"phone_number": "+442079460018", "reason": "sms_opt_out"})

    assert client.get(f"{BASE}/+12125550147").json()["note"] == "asked by phone"
    assert client.get(f"{BASE}/%2B12125550147").status_code == 200
    page = client.get(BASE, params={"page[size]": 1}).json()
    assert page["meta"] == {"total_pages": 2, "total_results": 2, "page_number": 1, "page_size": 1}
    filtered = client.get(BASE, params={"reason": "sms_opt_out"}).json()
    assert [e["phone_number"] for e in filtered["data"]] == ["+442079460018"]

    assert client.delete(f"{BASE}/2125550147").status_code == 204
    missing = client.delete(f"{BASE}/+12125550147")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["detail"] == "+12125550147 is not on the do-not-contact list"
    assert client.get(f"{BASE}/+12125550147").status_code == 404


@pytest.mark.parametrize(
    ("body", "pointer", "detail"),
    [
        ({}, "/phone_number", "is required"),
        ({"phone_number": "nope"}, "/phone_number", "'nope' is not a phone number: not a phone number"),
        ({"phone_number": "+12125550147", "reason": "angry"}, "/reason", "must be one of manual, file"),
        ({"phone_number": "+12125550147", "note": 5}, "/note", "must be a string"),
        ({"phone_number": "2125550147", "default_region": "ZZ"}, "/default_region", "unknown region 'ZZ'"),
    ],
)
def test_bad_add_requests_name_the_field(
    client: TestClient, body: dict[str, object], pointer: str, detail: str
) -> None:
    r = client.post(BASE, json=body)
    assert r.status_code == 400
    error = r.json()["errors"][0]
    assert error["source"]["pointer"] == pointer and detail in error["detail"]


def test_bad_query_and_path(client: TestClient) -> None:
    assert client.get(BASE, params={"reason": "x"}).json()["errors"][0]["source"]["pointer"] == "/reason"
    assert client.get(BASE, params={"page[size]": 251}).status_code == 400
    assert client.delete(f"{BASE}/hello").status_code == 400
    assert client.post(BASE, content=b"{", headers={"content-type": "application/json"}).status_code == 400


def test_import_plain_text_and_multipart(client: TestClient) -> None:
    body = "# registry\n2125550101\n212,5550102\n\nnot-a-number\n+12125550101\n"
    r = client.post(f"{BASE}/import", content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "lines": 6,
        "numbers": 3,
        "added": 2,
        "already_listed": 0,
        "duplicates_in_file": 1,
        "invalid": 1,
        "errors": [{"line": 5, "value": "not-a-number", "reason": "not a phone number"}],
    }
    r = client.post(
        f"{BASE}/import",
        params={"note": "partner list", "default_region": "GB"},
        files={"file": ("dnc.txt", b"020 7946 0018\n2125550101\n", "text/plain")},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["added"], r.json()["invalid"]) == (1, 1)  # 2125550101 is no GB number
    assert client.get(f"{BASE}/+442079460018").json() == {
        "phone_number": "+442079460018",
        "reason": "file",
        "note": "partner list",
        "created_at": "2026-05-07T14:30:00Z",
    }
    assert client.post(f"{BASE}/import", files={"other": ("x", b"1")}).status_code == 400
    assert client.post(f"{BASE}/import", params={"reason": "x"}, content=b"").status_code == 400


def test_import_size_limit(runtime: Runtime) -> None:
    small = Runtime(
        settings=runtime.settings.model_copy(update={"max_upload_bytes": 20}),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    with TestClient(create_app(small)) as c:
        r = c.post(f"{BASE}/import", content=b"2125550101\n" * 3, headers={"content-type": "text/plain"})
    assert r.status_code == 400 and "20 byte limit" in r.json()["errors"][0]["detail"]


def test_token_is_required(runtime: Runtime) -> None:
    guarded = Runtime(
        settings=runtime.settings.model_copy(update={"api_token": "secret"}),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    with TestClient(create_app(guarded)) as c:
        for method, path in (
            ("GET", BASE),
            ("POST", BASE),
            ("DELETE", f"{BASE}/+12125550147"),
            ("POST", f"{BASE}/import"),
        ):
            assert c.request(method, path).status_code == 401
        ok = c.post(BASE, json={"phone_number": "+12125550147"}, headers={"Authorization": "Bearer secret"})
        assert ok.status_code == 201


def test_campaign_upload_skips_listed_numbers_and_reports_them(client: TestClient) -> None:
    assert client.post(BASE, json={"phone_number": "+12125550147"}).status_code == 201
    csv = b"phone,name\n+12125550101,Ana\n+12125550147,Bo\n"
    settings = {"name": "c", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"}
    r = client.post(
        "/v1/campaigns", files={"file": ("l.csv", csv, "text/csv")}, data={"campaign": json.dumps(settings)}
    )
    assert r.status_code == 201, r.text
    campaign = r.json()
    assert (campaign["import"]["rows_accepted"], campaign["import"]["rows_suppressed"]) == (1, 1)
    errors = client.get(f"/v1/campaigns/{campaign['id']}/errors.csv").text.splitlines()
    assert errors[1] == "3,phone,+12125550147,on the do-not-contact list (manual),suppressed"


def test_stored_upload_imported_by_the_task_skips_listed_numbers(runtime: Runtime) -> None:
    """Above the inline threshold the worker task imports the file; the list applies there too."""
    from campaigns.importing import run_stored_import

    queued: list[uuid.UUID] = []
    big = Runtime(
        settings=runtime.settings.model_copy(update={"inline_import_max_bytes": 10}),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    with TestClient(create_app(big, enqueue_import=queued.append)) as c:
        assert c.post(BASE, json={"phone_number": "+12125550147", "reason": "sms_opt_out"}).status_code == 201
        settings = {"name": "c", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"}
        r = c.post(
            "/v1/campaigns",
            files={"file": ("l.csv", b"phone\n+12125550101\n+12125550147\n+12125550102\n", "text/csv")},
            data={"campaign": json.dumps(settings)},
        )
        assert r.status_code == 201 and r.json()["import"]["status"] == "pending"
        assert run_stored_import(runtime.sessions, queued[0], now=runtime.clock.now) == "completed"
        body = c.get(f"/v1/campaigns/{queued[0]}").json()
        assert (body["import"]["rows_accepted"], body["import"]["rows_suppressed"]) == (2, 1)
        errors = c.get(f"/v1/campaigns/{queued[0]}/errors.csv").text.splitlines()
        assert errors[1:] == ["3,phone,+12125550147,on the do-not-contact list (sms_opt_out),suppressed"]
