"""End to end (``campaigns up`` + simulator, clock warped 60x): a rejected API key holds dispatch, fails nothing.

With the simulator refusing the whole account with 401 (its script default ``http_401``), 50 due calls stay
``pending`` with the provider's answer as ``deferred_reason``, none fails, and ``/readyz`` says why; once the
simulator accepts again, the probe (every second here) closes the hold and all 50 complete without anyone
touching the stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stack import Stack, poll, running_stack
from tests.e2e.test_dnc_e2e import EVENTS, clients, in_app_minutes, schedule

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
HELD = "provider rejected the API key (401)"


@pytest.fixture
def held_stack(database_url: str, redis_url: str, tmp_path: Path, sessions: object) -> Iterator[Stack]:
    env = {"CAMPAIGNS_TIME_WARP": "60", "CAMPAIGNS_PROVIDER_PROBE_SECS": "1"}
    with running_stack(database_url, redis_url, tmp_path, env=env) as running:
        yield running


def _events(api: httpx.Client, ids: list[str]) -> list[dict[str, Any]]:
    return [api.get(f"{EVENTS}/{event_id}").json() for event_id in ids]


def test_a_rejected_key_holds_every_due_call_until_the_provider_accepts_again(held_stack: Stack) -> None:
    api, sim = clients(held_stack)
    assert sim.post("/_simulator/script", json={"default": "http_401"}).status_code == 200
    at = in_app_minutes(api, 10)  # ten real seconds: time to create them all
    ids = [schedule(api, at, f"+1555000{n:04d}", channel="phone_call") for n in range(50)]

    def all_held() -> list[dict[str, Any]] | None:
        events = _events(api, ids)
        assert not [e for e in events if e["status"] == "failed"], "an event failed for the provider's refusal"
        return events if all(e["status"] == "pending" and e.get("deferred_reason") == HELD for e in events) else None

    try:
        poll(all_held, timeout=60, interval=0.5)
    except AssertionError:
        print(_events(api, ids[:3]), held_stack.tail())
        raise
    ready = api.get("/readyz")
    assert ready.status_code == 200 and HELD in ready.json()["provider"]
    rejected = [c for c in sim.get("/_simulator/calls").json()["data"] if c.get("status_code") == 401]
    assert len(rejected) <= 50  # the requests that met the refusal; then nothing is sent while held

    assert sim.post("/_simulator/script", json={}).status_code == 200  # the key works again

    def all_completed() -> list[dict[str, Any]] | None:
        events = _events(api, ids)
        assert not [e for e in events if e["status"] == "failed"]
        return events if all(e["status"] == "completed" for e in events) else None

    try:
        poll(all_completed, timeout=120, interval=0.5)
    except AssertionError:
        print(_events(api, ids[:3]), held_stack.tail())
        raise
    placed = [c for c in sim.get("/_simulator/calls").json()["data"] if c.get("status_code") == 200]
    assert sorted(c["to"] for c in placed) == sorted(f"+1555000{n:04d}" for n in range(50))  # once each
    assert api.get("/readyz").json()["provider"] == "ok"
