"""Campaign API on real PostgreSQL: upload, counts, exports, and pause/resume/cancel with a running scheduler."""

from __future__ import annotations

import csv
import io
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from campaigns.clock import FrozenClock
from campaigns.importing import run_stored_import
from campaigns.models import Campaign, ScheduledEvent
from tests.e2e.test_up import poll
from worker.api import create_app
from worker.runtime import Runtime
from worker.scheduler import Scheduler

DATA = Path(__file__).resolve().parents[2] / "data" / "campaigns"
SETTINGS = {
    "name": "Renewals",
    "assistant_id": "a1",
    "telnyx_agent_target": "+15553456789",
    "max_retries_client_errors": 1,
    "retry_interval_secs": 600,
    "default_region": "US",
    "ruleset": "none",
}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as c:
        yield c


def upload(client: TestClient, content: bytes, *, dry_run: bool = False, **settings: Any) -> Any:
    return client.post(
        "/v1/campaigns" + ("?dry_run=true" if dry_run else ""),
        files={"file": ("list.csv", content, "text/csv")},
        data={"campaign": json.dumps({**SETTINGS, **settings})},
    )


def test_mixed_file_counts_errors_and_export(client: TestClient, clock: FrozenClock) -> None:
    r = upload(client, (DATA / "mixed.csv").read_bytes())
    assert r.status_code == 201, r.text
    campaign = r.json()
    assert campaign["import"] == {
        "status": "completed",
        "error": None,
        "rows_total": 7,
        "rows_accepted": 4,
        "rows_rejected": 2,
        "rows_duplicate": 1,
        "rows_suppressed": 0,
        "rows_late_sent": 0,
        "rows_late_skipped": 0,
    }
    assert campaign["counts"]["pending"] == 4 and campaign["status"] == "active"

    errors = list(csv.DictReader(io.StringIO(client.get(f"/v1/campaigns/{campaign['id']}/errors.csv").text)))
    assert [(e["row_number"], e["column"], e["kind"]) for e in errors] == [
        ("4", "phone", "duplicate"),
        ("5", "phone", "rejected"),
        ("7", "timezone", "rejected"),
    ]
    assert errors[0]["reason"] == "duplicate of row 2"

    exported = client.get(f"/v1/campaigns/{campaign['id']}/export.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["source_row"] for r in rows] == ["2", "3", "6", "8"]
    by_row = {r["source_row"]: r for r in rows}
    assert by_row["3"]["phone"] == "+13125550102"  # E.164 starts with '+' but cannot run: left as it is
    assert by_row["3"]["first_name"] == '\'=HYPERLINK("http://evil")'
    assert by_row["6"]["first_name"] == "'-Bob"
    assert by_row["8"]["first_name"] == "Line\nbreak"
    assert by_row["2"]["metadata.customer_id"] == "c-1"
    assert by_row["2"]["status"] == "pending" and by_row["2"]["attempts"] == "0"
    assert by_row["3"]["phone_as_written"] == "(312) 555-0102" and by_row["3"]["row.phone"] == "(312) 555-0102"

    attempts = client.get(f"/v1/campaigns/{campaign['id']}/attempts.csv")
    assert attempts.status_code == 200 and attempts.headers["content-type"].startswith("text/csv")
    assert attempts.text.splitlines()[0].startswith("event_id,source_row,phone,phone_as_written,attempt_number")
    assert len(attempts.text.splitlines()) == 1  # nothing dispatched yet
    assert client.get(f"/v1/campaigns/{uuid.uuid4()}/attempts.csv").status_code == 404

    events = client.get(f"/v1/campaigns/{campaign['id']}/events", params={"page[size]": 10}).json()
    assert events["meta"]["total_results"] == 4
    los_angeles = next(e for e in events["data"] if e["telnyx_end_user_target"] == "+14155550104")
    assert los_angeles["scheduled_at_fixed_datetime"] == "2026-05-07T20:00:00Z"
    assert los_angeles["timezone"] == "America/Los_Angeles"
    assert los_angeles["conversation_metadata"] == {"customer_id": "c-5"}


def test_dry_run_creates_nothing(client: TestClient, runtime: Runtime) -> None:
    r = upload(client, (DATA / "mixed.csv").read_bytes(), dry_run=True)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["dry_run"] is True
    assert (report["import"]["rows_accepted"], report["import"]["rows_rejected"]) == (4, 2)
    assert [i["row_number"] for i in report["import"]["issues"]] == [4, 5, 7]
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0
        assert s.scalar(select(func.count()).select_from(ScheduledEvent)) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"name,city\nAna,Paris\n", "no phone column"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"phone,telnyx_secret\n+12125550101,x\n", "reserved"),
    ],
)
def test_file_level_problems_create_nothing(client: TestClient, runtime: Runtime, content: bytes, message: str) -> None:
    r = upload(client, content)
    assert r.status_code == 400, r.text
    error = r.json()["errors"][0]
    assert error["source"]["pointer"] == "/file" and message in error["detail"]
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0


def test_bad_settings_name_the_field(client: TestClient) -> None:
    r = upload(client, b"phone\n+12125550101\n", max_retries_client_errors=2, retry_interval_secs=None)
    assert r.status_code == 400
    assert [e["source"]["pointer"] for e in r.json()["errors"]] == ["/campaign/retry_interval_secs"]


@pytest.mark.parametrize(
    ("bad", "pointer"),
    [
        ({"max_dispatches_per_second": float("nan")}, "/campaign/max_dispatches_per_second"),
        ({"max_dispatches_per_second": float("inf")}, "/campaign/max_dispatches_per_second"),
        ({"ruleset": ["us"]}, "/campaign/ruleset"),
        ({"max_concurrent_calls": 2**31}, "/campaign/max_concurrent_calls"),
        ({"cap_max_attempts": 2**40}, "/campaign/cap_max_attempts"),
        ({"name": "n" * 256}, "/campaign/name"),
        ({"assistant_id": "a\x00"}, "/campaign/assistant_id"),
        ({"start_at": "9999-12-31T23:00:00-05:00"}, "/campaign/start_at"),
    ],
)
def test_settings_that_cannot_be_stored_are_a_400_and_create_nothing(
    client: TestClient, runtime: Runtime, bad: dict[str, Any], pointer: str
) -> None:
    """Each used to pass validation and fail later: a 500 with nothing created, or (NaN, infinity) a 500 after the
    campaign and its events were committed, so a retry created the campaign twice."""
    r = upload(client, b"phone\n+12125550101\n", **bad)
    assert r.status_code == 400, r.text
    assert pointer in [e["source"]["pointer"] for e in r.json()["errors"]]
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0
        assert s.scalar(select(func.count()).select_from(ScheduledEvent)) == 0


def test_over_the_size_limit(runtime: Runtime) -> None:
    small = Runtime(
        settings=runtime.settings.model_copy(update={"max_upload_bytes": 64}),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    with TestClient(create_app(small)) as c:
        r = upload(c, b"phone\n" + b"+12125550101\n" * 20)
    assert r.status_code == 400 and "limit" in r.json()["errors"][0]["detail"]


def test_sms_campaign_renders_the_template(client: TestClient) -> None:
    r = upload(
        client,
        b"phone,First Name,day\n+12125550101,Ana,Monday\n+12125550102,Ben,\n+12125550103,,Friday\n",
        telnyx_conversation_channel="sms_chat",
        text='Hi {{first_name}}, see you {{ day | default("soon") }}',
        max_retries_client_errors=None,
        retry_interval_secs=None,
    )
    assert r.status_code == 201, r.text
    events = client.get(f"/v1/campaigns/{r.json()['id']}/events").json()["data"]
    assert sorted(e["text"] for e in events) == ["Hi Ana, see you Monday", "Hi Ben, see you soon"]
    errors = client.get(f"/v1/campaigns/{r.json()['id']}/errors.csv").text.splitlines()
    assert errors[1:] == [
        "4,First Name,,\"empty value for 'first_name', which the text uses (or give a default in the template)\","
        "rejected"
    ]


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_unknown_placeholder_refuses_the_campaign_naming_it(client: TestClient, dry_run: bool) -> None:
    r = upload(
        client,
        b"phone,First Name\n+12125550101,Ana\n",
        dry_run=dry_run,
        telnyx_conversation_channel="sms_chat",
        text="Hi {{first_name}} {{Appointment_Date}}",
        max_retries_client_errors=None,
        retry_interval_secs=None,
    )
    assert r.status_code == 400, r.text
    (error,) = r.json()["errors"]
    assert error["source"]["pointer"] == "/campaign/text"
    assert "{{Appointment_Date}}" in error["detail"] and "first_name" not in error["detail"]
    assert client.get("/v1/campaigns").json()["meta"]["total_results"] == 0


def test_large_upload_is_imported_by_a_task(runtime: Runtime) -> None:
    """Above the inline threshold the file is stored in PostgreSQL and imported by the worker task."""
    queued: list[uuid.UUID] = []
    big = Runtime(
        settings=runtime.settings.model_copy(update={"inline_import_max_bytes": 10}),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    with TestClient(create_app(big, enqueue_import=queued.append)) as c:
        r = upload(c, (DATA / "mixed.csv").read_bytes())
        assert r.status_code == 201
        assert r.json()["import"]["status"] == "pending" and queued == [uuid.UUID(r.json()["id"])]
        assert run_stored_import(runtime.sessions, queued[0], now=runtime.clock.now) == "completed"
        assert run_stored_import(runtime.sessions, queued[0], now=runtime.clock.now) == "nothing to do"
        body = c.get(f"/v1/campaigns/{queued[0]}").json()
    assert body["import"]["status"] == "completed" and body["import"]["rows_accepted"] == 4
    assert body["counts"]["pending"] == 4


def test_pause_resume_cancel_with_a_running_scheduler(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    claimed: list[str] = []
    lock = threading.Lock()

    def enqueue(ids: list[str]) -> None:
        with lock:
            claimed.extend(ids)

    paused_id = upload(client, b"phone\n+12125550101\n+12125550102\n+12125550103\n", name="paused").json()["id"]
    canceled_id = upload(client, b"phone\n+13125550101\n+13125550102\n", name="canceled").json()["id"]
    assert client.post(f"/v1/campaigns/{paused_id}/pause").json()["status"] == "paused"
    assert client.post(f"/v1/campaigns/{paused_id}/pause").status_code == 409
    assert client.post(f"/v1/campaigns/{canceled_id}/cancel").json()["counts"]["canceled"] == 2
    clock.advance(60)  # everything is due now

    scheduler = Scheduler(runtime, enqueue)
    thread = threading.Thread(target=scheduler.run)
    thread.start()
    try:
        poll(lambda: scheduler.iterations >= 3, timeout=10)  # it has looked at the due rows several times
        assert claimed == []
        assert client.get(f"/v1/campaigns/{paused_id}").json()["counts"]["pending"] == 3

        assert client.post(f"/v1/campaigns/{paused_id}/resume").json()["status"] == "active"
        poll(lambda: len(claimed) == 3, timeout=10)
        counts = client.get(f"/v1/campaigns/{paused_id}").json()["counts"]
        assert counts["in_progress"] == 3
        canceled = client.get(f"/v1/campaigns/{canceled_id}").json()
        assert canceled["status"] == "canceled" and canceled["counts"]["canceled"] == 2
    finally:
        scheduler.stopping.set()
        thread.join(10)
    with runtime.sessions() as s:
        targets = s.scalars(
            select(ScheduledEvent.telnyx_end_user_target).where(ScheduledEvent.status == "in_progress")
        ).all()
    assert sorted(targets) == ["+12125550101", "+12125550102", "+12125550103"]


def test_list_and_unknown_campaign(client: TestClient) -> None:
    upload(client, b"phone\n+12125550101\n")
    listed = client.get("/v1/campaigns").json()
    assert listed["meta"]["total_results"] == 1 and listed["data"][0]["name"] == "Renewals"
    assert client.get(f"/v1/campaigns/{uuid.uuid4()}").status_code == 404
    assert client.post("/v1/campaigns/not-an-id/pause").status_code == 404


def test_a_conflict_is_not_telnyxs_missing_association(client: TestClient) -> None:
    """Telnyx's 10013 is "Missing association"; a state conflict carries its HTTP status as its code."""
    campaign_id = upload(client, b"phone\n+12125550101\n").json()["id"]
    assert client.post(f"/v1/campaigns/{campaign_id}/cancel").status_code == 200
    conflict = client.post(f"/v1/campaigns/{campaign_id}/pause")
    assert conflict.status_code == 409
    assert conflict.json() == {
        "errors": [
            {
                "code": "409",
                "title": "Conflict",
                "detail": "campaign is canceled; only an active campaign can be paused",
            }
        ]
    }


def test_a_held_provider_shows_on_the_campaigns_it_stops(client: TestClient, runtime: Runtime) -> None:
    """Issue 17: a rejected key holds dispatch; the campaigns say so (their events wait, none fails)."""
    from campaigns.db import unit_of_work
    from campaigns.lifecycle import holds
    from campaigns.telephony import ProviderHeld

    calls = upload(client, b"phone\n+12125550147\n").json()
    sms = {"telnyx_conversation_channel": "sms_chat", "text": "Hi", "max_retries_client_errors": None,
           "retry_interval_secs": None}  # fmt: skip
    texts = upload(client, b"phone\n+12125550148\n", **sms).json()
    assert calls["provider_holds"] == [] and texts["provider_holds"] == []
    held = ProviderHeld("401", reason="api_key", detail="provider rejected the API key (401)")
    now = runtime.clock.now()
    with unit_of_work(runtime.sessions) as s:
        holds.open_hold(s, "texml", held, now=now, probe_at=now)
    shown = client.get(f"/v1/campaigns/{calls['id']}").json()["provider_holds"]
    assert shown == [
        {"provider": "texml", "reason": "api_key", "detail": "provider rejected the API key (401)",
         "since": now.isoformat().replace("+00:00", "Z")}
    ]  # fmt: skip
    assert client.get(f"/v1/campaigns/{texts['id']}").json()["provider_holds"] == []  # messaging is not held
