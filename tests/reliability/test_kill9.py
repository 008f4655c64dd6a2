"""kill -9 of workers and schedulers at random points during a campaign: nothing dialled twice, nothing lost.

CI: 600 events, 6 kills. ``CHAOS_FULL=1`` (``make chaos``): 10,000 events, 20 kills.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.reliability.stack import FULL, Stack, wait_settled

# Larger than the sum of the kill loop and the settle deadline below, so a slow run fails with the stack's counts.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800 if FULL else 420)]

EVENTS = 10_000 if FULL else 600
KILLS = 20 if FULL else 6
RETRIES = 2
SPREAD = 0.03


def test_kill9_workers_and_schedulers(stack: Stack) -> None:
    rng = random.Random(20261121)
    # channel_limit: calls refused for the account's channel limit spend no budget; machine without detection
    # requested looks like completed (as on the real network).
    stack.start_simulator("completed=0.45,busy=0.2,no-answer=0.2,channel_limit=0.1,machine=0.05")
    # Due over time (about 30 calls/s): a steady campaign, not one burst that saturates the webhook path.
    stack.insert_events(EVENTS, retries=RETRIES, spread_secs=SPREAD)
    for name in ("api", "beat", "worker", "scheduler"):
        stack.start(name)
    injected: list[str] = []
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.3, 2 * EVENTS * SPREAD / KILLS))
        target = rng.choice(["worker", "scheduler"])
        stack.kill(target)
        injected.append(target)
        time.sleep(rng.uniform(0.0, 0.5))
        stack.start(target)
    wait_settled(stack, timeout=900 if FULL else 180)
    observed = stack.check()
    print(f"\nkill -9 chaos: injected {len(injected)} kills ({injected.count('worker')} worker, "
          f"{injected.count('scheduler')} scheduler); observed {observed}")  # fmt: skip
    assert observed["events"] == EVENTS
    assert observed["statuses"].get("pending", 0) == 0
