"""End to end: ``campaigns simulator`` and ``campaigns up`` as subprocesses, the clock warped 60x."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from campaigns.signatures import private_key_b64, public_key_b64
from worker.embedded import free_port, wait_for_port

pytestmark = pytest.mark.e2e
TOKEN = "e2e-token"
ASSISTANT = "assistant-e2e"


def poll(fn: Any, *, timeout: float, interval: float = 0.1) -> Any:
    """Call ``fn`` until it returns something truthy, or fail after ``timeout`` real seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
    )


@pytest.fixture
def stack(database_url: str, redis_url: str, tmp_path: Path, sessions: object) -> Iterator[dict[str, Any]]:
    key = Ed25519PrivateKey.generate()
    sim_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env.update(
        {
            "CAMPAIGNS_SIMULATOR_PRIVATE_KEY": private_key_b64(key),
            "CAMPAIGNS_DATABASE_URL": database_url,
            "CAMPAIGNS_REDIS_URL": redis_url,
            "CAMPAIGNS_API_TOKEN": TOKEN,
            "CAMPAIGNS_TELNYX_API_KEY": "KEY_E2E",
            "CAMPAIGNS_TELNYX_BASE_URL": f"http://127.0.0.1:{sim_port}/v2",
            "CAMPAIGNS_TELNYX_PUBLIC_KEY": public_key_b64(key),
            "CAMPAIGNS_TELNYX_TEXML_APP_ID": "texml-e2e",
            "CAMPAIGNS_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
            "CAMPAIGNS_TIME_WARP": "60",
            "CAMPAIGNS_RECONCILE_INTERVAL_SECS": "2",
        }
    )
    sim = _spawn(
        ["simulator", "--port", str(sim_port), "--ring-delay", "0.1", "--talk-delay", "0.2"], env, tmp_path / "sim.log"
    )
    up = _spawn(["up", "--port", str(api_port)], env, tmp_path / "up.log")
    try:
        wait_for_port(sim_port, timeout=30)
        wait_for_port(api_port, timeout=60)
        yield {"api": f"http://127.0.0.1:{api_port}", "sim": f"http://127.0.0.1:{sim_port}", "up": up, "logs": tmp_path}
    finally:
        for process in (up, sim):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in (up, sim):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        # Celery's queue in this Redis database must not leak into other tests.
        import redis

        redis.Redis.from_url(redis_url).flushdb()


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


def _healthz(api: httpx.Client) -> dict[str, Any] | None:
    try:
        response = api.get("/healthz")
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None
