"""End to end with the warped clock (1800x): the calling window holds a call until it opens, and a retry that
would fall after closing time moves to the next morning. The simulator's request log is the witness.

Recipients' zones are chosen at run time (``Etc/GMT±N`` through the ``timezone`` extension field) so that the
local times of interest are an app hour or so ahead, however long the stack takes to start.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.stack import TOKEN, Stack, healthz, poll, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ASSISTANT = "assistant-windows"
WARP = 1800.0


@pytest.fixture
def stack(database_url: str, redis_url: str, tmp_path: Path, sessions: object) -> Iterator[Stack]:
    env = {"CAMPAIGNS_TIME_WARP": str(WARP), "CAMPAIGNS_TIME_START": "2025-07-15T12:00:00Z",
           "CAMPAIGNS_DEFAULT_RULESET": "us"}  # fmt: skip
    sim_args = ("--ring-delay", "0.05", "--talk-delay", "0.05")
    with running_stack(database_url, redis_url, tmp_path, env=env, sim_args=sim_args) as running:
        yield running


def zone_at_local_hour(now: datetime, hour: int) -> str:
    """A fixed-offset IANA zone in which ``now`` falls in local hour ``hour``."""
    for offset in range(-12, 15):
        name = f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "Etc/GMT"
        if now.astimezone(ZoneInfo(name)).hour == hour:
            return name
    raise AssertionError(f"no zone has local hour {hour} at {now}")


def local_time(now: datetime, zone: str, hour: int, minute: int) -> datetime:
    local = now.astimezone(ZoneInfo(zone))
    moment = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return (moment if moment > local else moment + timedelta(days=1)).astimezone(UTC)


def app_clock(api: httpx.Client) -> tuple[float, datetime]:
    """A (real, app) pair taken as close together as possible, to map simulator (real) times to app time."""
    before = time.time()
    app_now = datetime.fromisoformat(api.get("/healthz").json()["time"])
    after = time.time()
    return (before + after) / 2, app_now


def to_app(real: datetime, reference: tuple[float, datetime]) -> datetime:
    return reference[1] + timedelta(seconds=(real.timestamp() - reference[0]) * WARP)


def test_a_closed_window_holds_the_call_and_a_late_retry_waits_for_morning(stack: Stack) -> None:
    api = httpx.Client(base_url=stack["api"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    sim = httpx.Client(base_url=stack["sim"], timeout=10)
    early, late = "+15550002001", "+15550002002"
    sim.post("/_simulator/script", json={"targets": {late: ["busy", "completed"]}, "default": "completed"})
    poll(lambda: healthz(api), timeout=30)
    reference = app_clock(api)
    now = reference[1]

    # "early" lives where it is 06:xx now: due in half an hour, but the window opens at 08:00 local.
    early_zone = zone_at_local_hour(now, 6)
    opening = local_time(now, early_zone, 8, 0)
    # "late" lives where it is 18:xx now: called at 19:30 local, busy, retry two hours later would be 21:30+.
    late_zone = zone_at_local_hour(now, 18)
    late_at = local_time(now, late_zone, 19, 30)
    morning = local_time(late_at, late_zone, 8, 0)
    ids = {}
    retry = {"max_retries_client_errors": 1, "retry_interval_secs": 7200}
    for target, zone, due, policy in (
        (early, early_zone, now + timedelta(minutes=30), {}),
        (late, late_zone, late_at, retry),
    ):
        response = api.post(
            f"/v2/ai/assistants/{ASSISTANT}/scheduled_events",
            json={
                "telnyx_conversation_channel": "phone_call",
                "telnyx_end_user_target": target,
                "telnyx_agent_target": "+15553456789",
                "scheduled_at_fixed_datetime": due.isoformat(),
                "timezone": zone,
                **policy,
            },
        )
        assert response.status_code == 201, response.text
        assert response.json()["ruleset"] == "us"  # CAMPAIGNS_DEFAULT_RULESET
        ids[target] = response.json()["scheduled_event_id"]

    def calls_to(target: str) -> list[dict[str, Any]]:
        return [c for c in sim.get("/_simulator/calls").json()["data"] if c["to"] == target]

    def event(target: str) -> dict[str, Any]:
        body: dict[str, Any] = api.get(f"/v2/ai/assistants/{ASSISTANT}/scheduled_events/{ids[target]}").json()
        return body

    def done(target: str) -> dict[str, Any] | None:
        body = event(target)
        return body if body["status"] in ("completed", "failed", "canceled") else None

    try:
        # Before the opening, the simulator hears nothing for "early".
        while datetime.fromisoformat(api.get("/healthz").json()["time"]) < opening - timedelta(minutes=5):
            assert calls_to(early) == []
            time.sleep(0.05)
        first = poll(lambda: done(early), timeout=30)
        late_event = poll(lambda: done(late), timeout=60)
    except AssertionError:
        print((stack["logs"] / "up.log").read_text()[-5000:])
        raise

    assert first["status"] == "completed"
    (attempt,) = first["call_attempts"]
    attempted = datetime.fromisoformat(attempt["attempted_at"].replace("Z", "+00:00"))
    assert opening <= attempted < opening + timedelta(hours=2)  # at the opening (2 app hours = 4 real s of slack)
    (request,) = calls_to(early)
    received = to_app(datetime.fromisoformat(request["received_at"].replace("Z", "+00:00")), reference)
    assert received >= opening - timedelta(minutes=2)  # real→app mapping is good to about a minute at 1800x

    assert late_event["status"] == "completed"
    busy, completed = late_event["call_attempts"]
    assert busy["call_status"] == "busy" and completed["call_status"] == "completed"
    first_try = datetime.fromisoformat(busy["attempted_at"].replace("Z", "+00:00"))
    second_try = datetime.fromisoformat(completed["attempted_at"].replace("Z", "+00:00"))
    assert late_at <= first_try < late_at + timedelta(minutes=90)  # before 21:00 local: inside the window
    assert morning <= second_try < morning + timedelta(hours=2)  # not 21:30 the evening before
    assert len(calls_to(late)) == 2
