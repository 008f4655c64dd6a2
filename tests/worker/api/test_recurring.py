"""``/v1/recurring`` and ``campaigns recurring`` on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from campaigns.clock import FrozenClock
from campaigns.models import Campaign, RecurringDefinition, ScheduledEvent
from worker.api import create_app
from worker.cli import app as cli
from worker.runtime import Runtime, reset_runtime

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "recurring" / "appointment-reminders.toml"
CSV = "phone,name,appointment_at\n+12125550101,Ana,2026-05-09 10:00\n+12125550102,Ben,2026-05-09 11:00\n"


def Z(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    (tmp_path / "lists").mkdir()
    return tmp_path


@pytest.fixture
def client(runtime: Runtime, directory: Path) -> Iterator[TestClient]:
    rt = Runtime(
        settings=runtime.settings.model_copy(update={"recurring_dir": str(directory)}),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    with TestClient(create_app(rt)) as c:
        yield c


def definition(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "reminders",
        "cron": "0 7 * * *",
        "timezone": "America/New_York",
        "source": "lists/*.csv",
        "due": "appointment_at - 24h",
        "dedupe_key": ["phone", "appointment_at"],
        "campaign": {"assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none"},
    }
    body.update(overrides)
    return body


def test_create_update_get_and_run_now(client: TestClient, directory: Path, clock: FrozenClock) -> None:
    # The clock fixture is 2026-05-07 14:30Z (10:30 EDT).
    created = client.post("/v1/recurring", json=definition())
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["origin"] == "api" and body["source"] == str(directory / "lists" / "*.csv")
    assert body["next_run_at"] == "2026-05-08T11:00:00Z"
    assert body["next_runs"][:2] == ["2026-05-08T11:00:00Z", "2026-05-09T11:00:00Z"]
    assert body["runs"] == [] and body["runs_total"] == 0

    updated = client.post("/v1/recurring", json=definition(cron="30 6 * * *"))
    assert updated.status_code == 200 and updated.json()["next_run_at"] == "2026-05-08T10:30:00Z"

    (directory / "lists" / "day1.csv").write_text(CSV)
    run = client.post("/v1/recurring/reminders/run-now")
    assert run.status_code == 201, run.text
    result = run.json()
    assert result["kind"] == "manual" and result["status"] == "completed" and result["tick_at"] is None
    assert result["rows"] == {"total": 2, "created": 2, "rejected": 0, "past": 0, "duplicate": 0, "suppressed": 0}
    (campaign_id,) = result["campaign_ids"]
    campaign = client.get(f"/v1/campaigns/{campaign_id}").json()
    assert campaign["counts"]["pending"] == 2 and campaign["name"].startswith("reminders 2026-05-07")
    assert campaign["recurring_run_id"] == result["id"]
    events = client.get(f"/v1/campaigns/{campaign_id}/events").json()["data"]
    assert sorted(e["scheduled_at_fixed_datetime"] for e in events) == ["2026-05-08T14:00:00Z", "2026-05-08T15:00:00Z"]

    again = client.post("/v1/recurring/reminders/run-now").json()
    assert again["status"] == "no_new_file" and again["campaign_ids"] == []
    forced = client.post("/v1/recurring/reminders/run-now", params={"force": "true"}).json()
    assert forced["rows"]["created"] == 0 and forced["rows"]["duplicate"] == 2

    detail = client.get("/v1/recurring/reminders").json()
    assert detail["runs_total"] == 3
    assert [(r["status"], r["rows"]["created"]) for r in detail["runs"]] == [  # newest first
        ("completed", 0),
        ("no_new_file", 0),
        ("completed", 2),
    ]
    assert client.get(f"/v1/recurring/{body['id']}").json()["name"] == "reminders"

    listing = client.get("/v1/recurring").json()
    assert listing["meta"]["total_results"] == 1
    assert listing["data"][0]["last_run"]["status"] in ("completed", "no_new_file")


def test_invalid_definitions_name_every_field(client: TestClient) -> None:
    r = client.post(
        "/v1/recurring",
        json=definition(cron="every day", timezone="Mars/Base", due="appointment_at 9am", extra=1,
                        campaign={"assistant_id": "a1", "max_retries_client_errors": 3}),
    )  # fmt: skip
    assert r.status_code == 400
    pointers = sorted(e["source"]["pointer"] for e in r.json()["errors"])
    assert pointers == ["/campaign/retry_interval_secs", "/campaign/telnyx_agent_target", "/cron", "/due", "/extra",
                        "/timezone"]  # fmt: skip
    outside = client.post("/v1/recurring", json=definition(source="/etc/*.csv"))
    assert outside.status_code == 400 and "must be inside" in outside.json()["errors"][0]["detail"]
    assert client.post("/v1/recurring", content=b"{nope").status_code == 400


def test_unknown_definitions_are_404(client: TestClient) -> None:
    r = client.get("/v1/recurring/nope")
    assert r.status_code == 404 and r.json()["errors"][0]["detail"] == "no recurring definition nope"
    assert client.post("/v1/recurring/nope/run-now").status_code == 404


def test_without_a_recurring_directory_the_api_refuses_definitions(runtime: Runtime) -> None:
    with TestClient(create_app(runtime)) as c:
        r = c.post("/v1/recurring", json=definition())
    assert r.status_code == 400 and "CAMPAIGNS_RECURRING_DIR" in r.json()["errors"][0]["detail"]


# --- CLI -------------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(
    database_url: str, monkeypatch: pytest.MonkeyPatch, sessions: sessionmaker[Session], directory: Path
) -> Iterator[Path]:
    monkeypatch.setenv("CAMPAIGNS_DATABASE_URL", database_url)
    monkeypatch.setenv("CAMPAIGNS_RECURRING_DIR", str(directory))
    monkeypatch.setenv("CAMPAIGNS_TIME_START", "2026-11-23T11:30:00Z")
    monkeypatch.setenv("CAMPAIGNS_TIME_WARP_ORIGIN", datetime.now().astimezone().isoformat())
    reset_runtime()
    yield directory
    reset_runtime()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["recurring", *args], env={"COLUMNS": "220"})
    return result.exit_code, result.stdout, result.stderr


def test_validate_prints_the_next_five_runs_in_the_definitions_zone(cli_env: Path) -> None:
    code, out, err = run("validate", str(EXAMPLE))
    assert code == 0, err
    assert "'appointment-reminders', cron '0 7 * * *' in America/New_York" in out
    lines = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert lines == [
        "2026-11-23 07:00 EST  (2026-11-23 12:00 UTC)",
        "2026-11-24 07:00 EST  (2026-11-24 12:00 UTC)",
        "2026-11-25 07:00 EST  (2026-11-25 12:00 UTC)",
        "2026-11-26 07:00 EST  (2026-11-26 12:00 UTC)",
        "2026-11-27 07:00 EST  (2026-11-27 12:00 UTC)",
    ]
    assert "1 matching file(s)" in out


def test_validate_shows_the_call_list_settings(cli_env: Path) -> None:
    path = cli_env / "ehr.toml"
    path.write_text(
        'name = "ehr"\ncron = "0 7 * * *"\ntimezone = "America/New_York"\nsource = "lists/*.csv"\n'
        'due = "appointment_date appointment_time - 2h"\nvariables = ["first_name"]\n'
        '[mapping]\n"Email" = "-"\n[campaign]\nassistant_id = "a1"\ntelnyx_agent_target = "+15553456789"\n'
    )
    code, out, err = run("validate", str(path))
    assert code == 0, err
    assert "dedupe key: phone, appointment_date, appointment_time" in out
    assert 'mapping: {"Email": null}' in out and 'variables: ["first_name"]' in out


def test_validate_a_bad_file_exits_2_naming_file_and_field(cli_env: Path) -> None:
    bad = cli_env / "bad.toml"
    bad.write_text('name = "x"\ncron = "0 25 * * *"\ntimezone = "America/New_York"\nsource = "a.csv"\n')
    code, _, err = run("validate", str(bad))
    assert code == 2
    assert f"{bad}: cron: '0 25 * * *' is not a valid cron expression" in err
    assert f"{bad}: campaign: is required" in err


def test_list_and_run_now_read_the_directory(cli_env: Path, sessions: sessionmaker[Session]) -> None:
    (cli_env / "reminders.toml").write_text(
        """name = "reminders"
cron = "0 7 * * 1-5"
timezone = "America/Chicago"
source = "lists/*.csv"
due = "appointment_at 09:00 local"
[campaign]
assistant_id = "a1"
telnyx_agent_target = "+15553456789"
ruleset = "none"
"""
    )
    (cli_env / "lists" / "today.csv").write_text("phone,appointment_at\n+13125550101,2026-11-25\n")
    code, out, err = run("list")
    assert code == 0, err
    assert "reminders" in out and "0 7 * * 1-5" in out and "2026-11-23 07:00 CST" in out

    code, out, err = run("run-now", "reminders")
    assert code == 0, err
    assert out.startswith("completed: today.csv: 1 rows, 1 scheduled")
    campaign_id = out.strip().splitlines()[-1]
    with sessions() as s:
        event = s.scalars(select(ScheduledEvent).where(ScheduledEvent.campaign_id == campaign_id)).one()
        assert event.scheduled_at_fixed_datetime == Z("2026-11-25T15:00Z")  # 09:00 CST
        assert s.scalar(select(func.count()).select_from(RecurringDefinition)) == 1

    code, out, _ = run("run-now", "reminders")
    assert code == 0 and out.startswith("no_new_file: no new file")
    assert run("run-now", "missing")[0] == 1
    code, out, _ = run("list")
    assert "no_new_file" in out
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 1


# --- issue #19 item 11 ----------------------------------------------------------------------------------------


def test_an_api_definition_keeps_its_root_when_the_worker_has_none(
    client: TestClient, runtime: Runtime, directory: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With CAMPAIGNS_RECURRING_DIR unset on the worker, ``source = "*"`` followed a symlink to /etc/passwd and
    echoed its first line in the run message."""
    from campaigns import recurring

    outside = tmp_path_factory.mktemp("outside") / "passwd"
    outside.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    (directory / "lists" / "passwd.csv").symlink_to(outside)
    (directory / "lists" / "secret.csv").write_text("patient_name_xyz,dob\nAna,1970-01-01\n")  # no phone column
    r = client.post("/v1/recurring", json=definition(source="lists/*.csv", due="now", dedupe_key=["phone"]))
    assert r.status_code == 201, r.text
    with runtime.sessions() as s:
        assert s.scalars(select(RecurringDefinition.allowed_root)).one() == str(directory.resolve())

    result = recurring.run_now(runtime.sessions, "reminders", now=runtime.clock.now(), allowed_root=None)
    assert "passwd" not in result.message and "root:x" not in result.message  # never opened: outside the root
    assert result.message.startswith("secret.csv: not imported: no phone column")
    assert "patient_name_xyz" not in result.message and "dob" not in result.message  # no file content
    detail = client.get("/v1/recurring/reminders").json()
    assert "patient_name_xyz" not in str(detail) and "root:x" not in str(detail)


def test_a_schedule_more_often_than_the_minimum_interval_is_refused(client: TestClient) -> None:
    r = client.post("/v1/recurring", json=definition(cron="*/2 * * * *"))
    assert r.status_code == 400
    (error,) = r.json()["errors"]
    assert error["source"]["pointer"] == "/cron"
    assert "can fire 2 min apart; definitions may run at most once every 5 min" in error["detail"]
    assert client.post("/v1/recurring", json=definition(cron="*/5 * * * *")).status_code == 201


def test_delete_removes_an_api_definition_and_keeps_its_campaigns(
    client: TestClient, directory: Path, sessions: sessionmaker[Session]
) -> None:
    (directory / "lists" / "a.csv").write_text(CSV)
    assert client.post("/v1/recurring", json=definition()).status_code == 201
    run_now = client.post("/v1/recurring/reminders/run-now")
    assert run_now.status_code == 201 and run_now.json()["campaign_ids"]
    assert client.delete("/v1/recurring/reminders").status_code == 204
    assert client.get("/v1/recurring/reminders").status_code == 404
    assert client.delete("/v1/recurring/reminders").status_code == 404
    with sessions() as s:
        campaign = s.scalars(select(Campaign)).one()
        assert campaign.recurring_run_id is None
        assert s.scalar(select(func.count()).select_from(ScheduledEvent)) == 2  # its reminders are still scheduled
    assert client.post("/v1/recurring", json=definition()).status_code == 201  # the name is free again


def test_delete_of_a_definition_files_definition_is_a_409_and_the_cli_deletes(
    cli_env: Path, sessions: sessionmaker[Session]
) -> None:
    (cli_env / "reminders.toml").write_text(
        'name = "from-file"\ncron = "0 7 * * *"\ntimezone = "America/Chicago"\nsource = "lists/*.csv"\n'
        'due = "now"\ndedupe_key = ["phone"]\n[campaign]\nassistant_id = "a1"\n'
        'telnyx_agent_target = "+15553456789"\nruleset = "none"\n'
    )
    assert run("list")[0] == 0
    code, _, err = run("delete", "from-file")
    assert code == 1 and "is defined by the file" in err and "remove the file" in err
    assert run("delete", "nothing-by-that-name")[0] == 1
    with sessions() as s:
        s.execute(update(RecurringDefinition).where(RecurringDefinition.name == "from-file").values(origin="api"))
        s.commit()
    (cli_env / "reminders.toml").unlink()
    code, out, err = run("delete", "from-file")
    assert code == 0, err
    assert out.strip() == "deleted recurring definition 'from-file'"
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(RecurringDefinition)) == 0


def test_a_definition_takes_a_mapping_and_an_allow_list(client: TestClient, directory: Path) -> None:
    body = definition(
        due="appointment_date appointment_time - 2h",
        dedupe_key=None,
        mapping={"Phone Number": "phone", "Email": None},
        variables=["first_name"],
        date_order="dmy",
    )
    del body["dedupe_key"]
    created = client.post("/v1/recurring", json=body)
    assert created.status_code == 201, created.text
    shown = client.get("/v1/recurring/reminders").json()
    assert shown["mapping"] == {"Phone Number": "phone", "Email": None}
    assert (shown["variables"], shown["date_order"]) == (["first_name"], "dmy")
    assert shown["dedupe_key"] == ["phone", "appointment_date", "appointment_time"]
    refused = client.post("/v1/recurring", json={**body, "mapping": {"Clinic": "telnyx_clinic"}})
    assert refused.status_code == 400
    assert any(e["source"]["pointer"] == "/mapping/Clinic" for e in refused.json()["errors"]), refused.text
