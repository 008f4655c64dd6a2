"""End to end (``campaigns up`` + simulator, clock warped 60x): a late ``completed`` after an unknown outcome
completes the event (issue 17, late truth wins).

The simulator's ``completed_late`` call is answered and ends, and ``GET /v2/calls/{id}`` says it is over, but its
terminal callback comes ``--late-callback-delay`` seconds later. With a one-second call lease the reconciler asks,
hears the call is not alive and no terminal status arrived, and fails the event closed as outcome unknown; the
late ``completed`` then replaces the unknown and the event completes, without a second dial.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import Stack, poll, running_stack
from tests.e2e.test_dnc_e2e import AGENT, EVENTS, clients, in_app_minutes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
TARGET = "+15550003101"
LATE_SECS = 10
"""Real seconds the terminal callback is held back: well past the one-second lease and reconcile interval."""


@pytest.fixture
def late_stack(database_url: str, redis_url: str, tmp_path: Path, sessions: object) -> Iterator[Stack]:
    # No callback grace: the reconciler closes the call as unknown as soon as the provider says it is over, so the
    # late callback meets an attempt already closed (the grace itself: test_reconcile.py).
    env = {
        "CAMPAIGNS_TIME_WARP": "60",
        "CAMPAIGNS_CALL_LEASE_SECS": "1",
        "CAMPAIGNS_RECONCILE_INTERVAL_SECS": "1",
        "CAMPAIGNS_CALLBACK_GRACE_SECS": "0",
    }
    sim_args = ("--ring-delay", "0.1", "--talk-delay", "0.2", "--late-callback-delay", str(LATE_SECS))
    with running_stack(database_url, redis_url, tmp_path, env=env, sim_args=sim_args) as running:
        yield running


def test_a_late_completed_after_an_unknown_outcome_completes_the_event(late_stack: Stack) -> None:
    api, sim = clients(late_stack)  # type: ignore[arg-type]  # a Stack reads like the dict the helper takes
    script = {"targets": {TARGET: ["completed_late"]}, "default": "completed"}
    assert sim.post("/_simulator/script", json=script).status_code == 200
    body = {
        "telnyx_conversation_channel": "phone_call",
        "telnyx_end_user_target": TARGET,
        "telnyx_agent_target": AGENT,
        "scheduled_at_fixed_datetime": in_app_minutes(api, 3).isoformat(),  # 3 real seconds: time to post it
        "max_retries_client_errors": 2,
        "retry_interval_secs": 60,
    }
    created = api.post(EVENTS, json=body)
    assert created.status_code == 201, created.text
    url = f"{EVENTS}/{created.json()['scheduled_event_id']}"

    def status_is(status: str) -> Any:
        def check() -> dict[str, Any] | None:
            event: dict[str, Any] = api.get(url).json()
            return event if event["status"] == status else None

        return check

    try:
        # The reconciler closes the attempt as unknown before the late callback arrives: failed closed.
        failed = poll(status_is("failed"), timeout=LATE_SECS)
        assert any("outcome unknown" in error for error in failed["errors"]), failed
        # Telnyx's call_status vocabulary has no "unknown": the wire says failed, the outcome says unknown.
        closed = [(a["attempt_number"], a["call_status"], a["outcome"]) for a in failed["call_attempts"]]
        assert closed == [(1, "failed", "unknown")], failed
        # Then the late ``completed`` wins: the event completes on its one attempt.
        event = poll(status_is("completed"), timeout=LATE_SECS + 30)
    except AssertionError:
        print(api.get(url).json())
        print(late_stack.tail())
        raise
    history = [(a["attempt_number"], a["call_status"], a["outcome"]) for a in event["call_attempts"]]
    assert history == [(1, "completed", "answered")], event
    assert not any("outcome unknown" in error for error in event["errors"]), event
    assert event["retry_count"] == 0
    dials = [c for c in sim.get("/_simulator/calls").json()["data"] if c["to"] == TARGET]
    assert len(dials) == 1, dials  # never re-dialled
    assert dials[0]["outcome"] == "completed_late"
