"""End to end: ``campaigns simulator`` and ``campaigns up`` as subprocesses, the clock warped 60x."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stack import TOKEN, Stack, healthz, poll, running_stack, spawn

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ASSISTANT = "assistant-e2e"
_healthz, _spawn = healthz, spawn  # the names other end-to-end tests import


@pytest.fixture
def stack(database_url: str, redis_url: str, tmp_path: Path, sessions: object) -> Iterator[Stack]:
    with running_stack(database_url, redis_url, tmp_path, env={"CAMPAIGNS_TIME_WARP": "60"}) as running:
        yield running


def test_retries_until_completed_through_the_real_stack(stack: dict[str, Any]) -> None:
    api = httpx.Client(base_url=stack["api"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    sim = httpx.Client(base_url=stack["sim"], timeout=10)
    target = "+15550001111"
    assert (
        sim.post(
            "/_simulator/script", json={"targets": {target: ["busy", "no-answer", "completed"]}, "default": "completed"}
        ).status_code
        == 200
    )
    app_now = datetime.fromisoformat(poll(lambda: _healthz(api), timeout=30)["time"])
    started = time.monotonic()
    created = api.post(
        f"/v2/ai/assistants/{ASSISTANT}/scheduled_events",
        json={
            "telnyx_conversation_channel": "phone_call",
            "telnyx_end_user_target": target,
            "telnyx_agent_target": "+15553456789",
            "scheduled_at_fixed_datetime": (app_now + timedelta(seconds=60)).isoformat(),
            "max_retries_client_errors": 2,
            "retry_interval_secs": 60,
        },
    )
    assert created.status_code == 201, created.text
    event_id = created.json()["scheduled_event_id"]
    url = f"/v2/ai/assistants/{ASSISTANT}/scheduled_events/{event_id}"

    def finished() -> dict[str, Any] | None:
        event = api.get(url).json()
        return event if event["status"] in ("completed", "failed", "canceled") else None

    try:
        event = poll(finished, timeout=30)
    except AssertionError:
        print((stack["logs"] / "up.log").read_text()[-5000:])
        raise
    assert time.monotonic() - started < 30
    assert event["status"] == "completed", event
    assert [(a["attempt_number"], a["call_status"]) for a in event["call_attempts"]] == [
        (1, "busy"),
        (2, "no-answer"),
        (3, "completed"),
    ]
    assert event["retry_count"] == 2
    times = [datetime.fromisoformat(a["attempted_at"].replace("Z", "+00:00")) for a in event["call_attempts"]]
    assert times == sorted(times)
    # Each retry ran at least retry_interval_secs (app time) after the previous attempt.
    assert all((b - a).total_seconds() >= 60 for a, b in itertools.pairwise(times))
    calls = sim.get("/_simulator/calls").json()["data"]
    attempt_ids = [c["attempt_id"] for c in calls if c["to"] == target]
    assert len(attempt_ids) == len(set(attempt_ids)) == 3  # no attempt dialled twice

    stack["up"].send_signal(signal.SIGINT)
    assert stack["up"].wait(30) == 0  # Ctrl-C stops the whole group cleanly
