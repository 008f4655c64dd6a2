"""The scheduler loop survives the database going away between a claim and reading the next due time.

Found by the restart scenario (test_restarts.py): PostgreSQL stopped right after a successful claim made
``next_due_at`` raise outside the loop's error handling, and a standalone ``campaigns scheduler`` exited.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy.exc

from campaigns import lifecycle
from worker.runtime import Runtime
from worker.scheduler import Scheduler

pytestmark = pytest.mark.db


def test_scheduler_keeps_running_when_next_due_time_fails(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    failures = {"left": 2}
    real_next_due_at = lifecycle.next_due_at

    def flaky_next_due_at(session: object) -> object:
        if failures["left"]:
            failures["left"] -= 1
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return real_next_due_at(session)  # type: ignore[arg-type]

    monkeypatch.setattr(lifecycle, "next_due_at", flaky_next_due_at)
    scheduler = Scheduler(runtime, enqueue=lambda ids: None)
    thread = threading.Thread(target=scheduler.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while thread.is_alive() and time.monotonic() < deadline and (failures["left"] or scheduler.iterations < 4):
        time.sleep(0.05)
    alive = thread.is_alive()
    scheduler.stopping.set()
    thread.join(10)
    assert failures["left"] == 0
    assert alive, "the scheduler loop died when reading the next due time failed"
    assert scheduler.iterations >= 4


def test_scheduler_claims_nothing_while_the_workers_are_behind(runtime: Runtime, clock: object) -> None:
    """Backpressure (found by the kill -9 chaos run): a full broker queue stops claims until it drains."""

    from campaigns.db import unit_of_work
    from campaigns.models import ScheduledEvent
    from tests.factories import make_event
    from worker.scheduler import MAX_QUEUED_BATCHES

    with unit_of_work(runtime.sessions) as s:
        event = make_event(s, runtime.clock.now())
        event_id = event.id
    runtime.clock.advance(3600)  # type: ignore[attr-defined]
    queued = {"batches": MAX_QUEUED_BATCHES}
    sent: list[list[str]] = []
    scheduler = Scheduler(runtime, enqueue=sent.append, backlog=lambda: queued["batches"])
    thread = threading.Thread(target=scheduler.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while scheduler.iterations < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert scheduler.iterations >= 20
        assert sent == []  # the due event waited: nothing was claimed while the queue was full
        with runtime.sessions() as s:
            assert s.get(ScheduledEvent, event_id).status == "pending"  # type: ignore[union-attr]
        queued["batches"] = 0
        deadline = time.monotonic() + 10
        while not sent and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(sent) == 1 and len(sent[0]) == 1
    finally:
        scheduler.stopping.set()
        thread.join(10)
