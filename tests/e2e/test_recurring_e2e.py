"""End to end: a recurring definition in ``CAMPAIGNS_RECURRING_DIR`` runs twice under ``campaigns up`` (beat ticks,
the clock warped 120x) against the simulator; the second run skips the reminders the first one scheduled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.stack import TOKEN, poll, running_stack
from tests.e2e.stack import healthz as _healthz

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
NY = ZoneInfo("America/New_York")
DEFINITION = """name = "reminders"
cron = "*/5 * * * *"
timezone = "America/New_York"
source = "lists/*.csv"
due = "appointment_at - 24h"
dedupe_key = ["phone", "appointment_at"]

[campaign]
assistant_id = "assistant-e2e"
telnyx_agent_target = "+15553456789"
ruleset = "us"
timezone = "America/New_York"
"""


@pytest.fixture
def stack(database_url: str, redis_url: str, tmp_path: Path, sessions: object) -> Iterator[dict[str, Any]]:
    recurring_dir = tmp_path / "recurring"
    (recurring_dir / "lists").mkdir(parents=True)
    env = {
        "CAMPAIGNS_TIME_WARP": "120",
        "CAMPAIGNS_TIME_START": "2026-11-23T13:40:00Z",  # Monday 08:40 in New York
        "CAMPAIGNS_RECURRING_DIR": str(recurring_dir),
        "CAMPAIGNS_RECURRING_TICK_SECS": "0.5",
    }
    with running_stack(database_url, redis_url, tmp_path, env=env) as running:
        yield {"api": running.api, "sim": running.sim, "dir": recurring_dir, "logs": tmp_path}


def appointments(rows: list[tuple[str, str, datetime]]) -> str:
    lines = ["phone,name,appointment_at"]
    lines += [f"{phone},{name},{at.astimezone(NY):%Y-%m-%d %H:%M}" for phone, name, at in rows]
    return "\n".join(lines) + "\n"


def test_a_definition_runs_twice_and_never_schedules_a_reminder_twice(stack: dict[str, Any]) -> None:
    api = httpx.Client(base_url=stack["api"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    sim = httpx.Client(base_url=stack["sim"], timeout=10)
    app_now = datetime.fromisoformat(poll(lambda: _healthz(api), timeout=30)["time"])
    # Reminders 24 h before appointments: due 40 app minutes (20 real seconds) from now, whole minutes.
    due = (app_now + timedelta(minutes=40)).replace(second=0, microsecond=0)
    first = [("+12125550101", "Ana", due + timedelta(days=1)), ("+12125550102", "Ben", due + timedelta(days=1)),
             ("+13125550103", "Cy", due + timedelta(days=1, minutes=2))]  # fmt: skip
    (stack["dir"] / "lists" / "day-1.csv").write_text(appointments(first))
    (stack["dir"] / "reminders.toml").write_text(DEFINITION)

    def definition() -> dict[str, Any]:
        response = api.get("/v1/recurring/reminders", params={"runs": 100})
        return response.json() if response.status_code == 200 else {}

    def runs_with_campaigns(n: int) -> list[dict[str, Any]] | None:
        runs = [r for r in definition().get("runs", []) if r["campaign_ids"]]
        return runs if len(runs) >= n else None

    def finished(campaign_id: str, total: int) -> dict[str, Any] | None:
        body = api.get(f"/v1/campaigns/{campaign_id}").json()
        return body if body["counts"]["completed"] == total else None

    try:
        (run1,) = poll(lambda: runs_with_campaigns(1), timeout=60)
        assert run1["kind"] == "scheduled" and run1["rows"]["created"] == 3, run1
        campaign1 = run1["campaign_ids"][0]
        poll(lambda: finished(campaign1, 3), timeout=90)

        # The next export repeats the three appointments and adds two; only the two new ones are scheduled.
        app_now = datetime.fromisoformat(_healthz(api)["time"])  # type: ignore[index]
        later = (app_now + timedelta(minutes=30)).replace(second=0, microsecond=0)
        second = [*first, ("+12125550104", "Di", later + timedelta(days=1)),
                  ("+13125550105", "Ed", later + timedelta(days=1))]  # fmt: skip
        (stack["dir"] / "lists" / "day-2.csv").write_text(appointments(second))
        runs = poll(lambda: runs_with_campaigns(2), timeout=60)
        run2 = runs[0]  # newest first
        assert run2["rows"] == {"total": 5, "created": 2, "rejected": 0, "past": 0, "duplicate": 3, "suppressed": 0}
        campaign2 = run2["campaign_ids"][0]
        poll(lambda: finished(campaign2, 2), timeout=90)
    except AssertionError:
        print((stack["logs"] / "up.log").read_text()[-8000:])
        print("app time", _healthz(api), "definition", definition())
        for run in definition().get("runs", []):
            for campaign_id in run["campaign_ids"]:
                print(api.get(f"/v1/campaigns/{campaign_id}/events").json())
        raise

    history = definition()["runs"]
    ticks = [r["tick_at"] for r in history]
    assert len(ticks) == len(set(ticks)) and all(r["kind"] in ("scheduled", "catch_up") for r in history)
    assert all(r["status"] == "no_new_file" for r in history if not r["campaign_ids"])
    assert sum(r["rows"]["created"] for r in history) == 5

    events = {}
    for campaign_id in (campaign1, campaign2):
        campaign = api.get(f"/v1/campaigns/{campaign_id}").json()
        assert campaign["name"].startswith("reminders 2026-11-23") and campaign["ruleset"] == "us"
        for event in api.get(f"/v1/campaigns/{campaign_id}/events").json()["data"]:
            events[event["telnyx_end_user_target"]] = event
    expected = {phone: at - timedelta(days=1) for phone, _, at in second}
    assert set(events) == set(expected)
    for phone, event in events.items():
        assert event["status"] == "completed"
        scheduled = datetime.fromisoformat(event["scheduled_at_fixed_datetime"].replace("Z", "+00:00"))
        assert scheduled == expected[phone]  # 24 h before the appointment, inside the calling window
        attempted = datetime.fromisoformat(event["call_attempts"][0]["attempted_at"].replace("Z", "+00:00"))
        assert attempted >= expected[phone]
    calls = sim.get("/_simulator/calls").json()["data"]
    assert sorted(c["to"] for c in calls) == sorted(expected)  # each reminder dialled exactly once
