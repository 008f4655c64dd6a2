"""End to end (``campaigns up`` + simulator, clock warped 60x): answering machines and per-outcome budgets.

- a ``machine`` then ``completed`` contact with ``voicemail_action=retry`` completes on attempt 2, attempt 1
  ``answered_by=machine``, ``outcome=voicemail``; with ``voicemail_action=complete`` it completes on attempt 1;
- without detection requested, a ``machine`` looks like ``completed`` (as on the real network);
- busy twice with a busy budget of 1 fails naming busy;
- a ``channel_limit`` then ``completed`` contact with no retries configured completes (no budget consumed);
- every answered call has the conversation id of the simulator's ``call.conversation.ended``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.stack import poll
from tests.e2e.test_dnc_e2e import AGENT, EVENTS, clients, finished, in_app_minutes
from tests.e2e.test_up import stack

__all__ = ["stack"]  # the fixture, imported for the tests below
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_machines_and_budgets_through_the_stack(stack: dict[str, Any]) -> None:
    api, sim = clients(stack)
    scripted = {
        "+15550003001": ["machine", "completed"],
        "+15550003002": ["machine", "completed"],
        "+15550003003": ["machine"],
        "+15550003004": ["busy", "busy", "completed"],
        "+15550003005": ["channel_limit", "completed"],
    }
    assert sim.post("/_simulator/script", json={"targets": scripted, "default": "completed"}).status_code == 200
    at = in_app_minutes(api, 3).isoformat()
    common = {"telnyx_conversation_channel": "phone_call", "telnyx_agent_target": AGENT,
              "scheduled_at_fixed_datetime": at, "max_retries_client_errors": 1, "retry_interval_secs": 60}  # fmt: skip
    bodies = {
        "retry": {**common, "telnyx_end_user_target": "+15550003001", "answering_machine_detection": "detect"},
        "complete": {
            **common,
            "telnyx_end_user_target": "+15550003002",
            "answering_machine_detection": "detect",
            "voicemail_action": "complete",
        },
        "undetected": {**common, "telnyx_end_user_target": "+15550003003"},
        "busy": {
            **common,
            "telnyx_end_user_target": "+15550003004",
            "max_retries_client_errors": 3,
            "retry_policy": {"busy": {"max_retries": 1, "retry_interval_secs": 60}},
        },
        # No retries at all: the account's channel limit is not the recipient's doing, so it spends no budget.
        "channel_limit": {
            **{k: v for k, v in common.items() if k != "retry_interval_secs"},
            "telnyx_end_user_target": "+15550003005",
            "max_retries_client_errors": 0,
        },
    }
    ids = {}
    for name, body in bodies.items():
        created = api.post(EVENTS, json=body)
        assert created.status_code == 201, created.text
        ids[name] = created.json()["scheduled_event_id"]

    def history(event: dict[str, Any]) -> list[tuple[int, str, str | None, str | None]]:
        return [(a["attempt_number"], a["call_status"], a["outcome"], a["answered_by"]) for a in event["call_attempts"]]

    retry = finished(api, ids["retry"], stack, timeout=90)
    assert retry["status"] == "completed", retry
    assert history(retry) == [(1, "completed", "voicemail", "machine"), (2, "completed", "answered", "human")]

    complete = finished(api, ids["complete"], stack, timeout=60)
    assert complete["status"] == "completed", complete
    assert history(complete) == [(1, "completed", "voicemail", "machine")]

    undetected = finished(api, ids["undetected"], stack, timeout=60)
    assert undetected["status"] == "completed", undetected
    assert history(undetected) == [(1, "completed", "answered", None)]

    busy = finished(api, ids["busy"], stack, timeout=90)
    assert busy["status"] == "failed", busy
    assert history(busy) == [(1, "busy", "busy", None), (2, "busy", "busy", None)]
    assert "outcome busy" in busy["errors"][-1]

    limited = finished(api, ids["channel_limit"], stack, timeout=90)
    assert limited["status"] == "completed", limited
    assert history(limited) == [(1, "failed", "channel_limited", None), (2, "completed", "answered", None)]
    assert limited["retry_count"] == 0

    def conversations_known() -> bool:
        events = [api.get(f"{EVENTS}/{ids[n]}").json() for n in ("retry", "complete", "undetected")]
        return all(e["conversation_id"] and all(a["conversation_id"] for a in e["call_attempts"]) for e in events)

    poll(conversations_known, timeout=30)
