"""The scheduler loop: claim due events, hand them to Celery after commit, sleep until the next due time."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

import psycopg

from campaigns import lifecycle
from campaigns.clock import real_seconds_to_app
from campaigns.db import normalize_url, unit_of_work
from campaigns.events import NOTIFY_CHANNEL
from worker.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

Enqueue = Callable[[list[str]], None]


def celery_enqueue(attempt_ids: list[str]) -> None:
    from worker.tasks import dispatch_attempts

    dispatch_attempts.delay(attempt_ids)


def run_once(
    rt: Runtime, enqueue: Enqueue, *, checks: Sequence[lifecycle.ClaimCheck] | None = None, chunk: int = 10
) -> int:
    """Claim one batch and enqueue it once the claim has committed. Returns how many were claimed."""
    with unit_of_work(rt.sessions) as session:
        claimed = lifecycle.claim_due_events(
            session,
            now=rt.clock.now(),
            limit=rt.settings.claim_batch_size,
            lease=real_seconds_to_app(rt.clock, rt.settings.claim_lease_secs),
            providers=rt.providers,
            checks=checks,
        )
    ids = [str(c.attempt_id) for c in claimed]
    for start in range(0, len(ids), chunk):
        # If this fails (Redis down), the leases expire and the reconciler returns the events to pending.
        enqueue(ids[start : start + chunk])
    return len(ids)


def seconds_until(rt: Runtime, due: datetime | None) -> float:
    """Real seconds to sleep before ``due`` (app time), capped."""
    cap = rt.settings.scheduler_max_sleep_secs
    if due is None:
        return cap
    app_seconds = (due - rt.clock.now()).total_seconds()
    return max(0.0, min(cap, app_seconds / rt.clock.rate))


class Scheduler:
    """Runs ``run_once`` in a loop; wakes early on ``NOTIFY campaigns_due``."""

    def __init__(self, rt: Runtime, enqueue: Enqueue = celery_enqueue) -> None:
        self.rt = rt
        self.enqueue = enqueue
        self.stopping = threading.Event()
        self.iterations = 0

    def _listen(self) -> psycopg.Connection[tuple[object, ...]] | None:
        url = self.rt.settings.database_url
        if not url:
            return None
        dsn = normalize_url(url).replace("postgresql+psycopg://", "postgresql://")
        try:
            conn = psycopg.connect(dsn, autocommit=True)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            return conn
        except psycopg.Error:
            log.warning("LISTEN unavailable; polling only")
            return None

    def run(self) -> None:
        conn = self._listen()
        log.info("scheduler started")
        try:
            while not self.stopping.is_set():
                self.iterations += 1
                try:
                    claimed = run_once(self.rt, self.enqueue)
                except Exception:
                    log.exception("claim failed; retrying shortly")
                    self.stopping.wait(1.0)
                    continue
                if claimed >= self.rt.settings.claim_batch_size:
                    continue
                with unit_of_work(self.rt.sessions) as session:
                    delay = seconds_until(self.rt, lifecycle.next_due_at(session))
                if delay <= 0:
                    continue
                if conn is not None:
                    try:
                        for _ in conn.notifies(timeout=delay, stop_after=1):
                            pass
                    except psycopg.Error:
                        conn = None
                else:
                    self.stopping.wait(delay)
        finally:
            if conn is not None:
                conn.close()
            log.info("scheduler stopped")


def main() -> None:
    scheduler = Scheduler(get_runtime())

    def stop(*_: object) -> None:
        scheduler.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.run()
