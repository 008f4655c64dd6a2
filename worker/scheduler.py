"""The scheduler loop: claim due events, hand them to Celery after commit, sleep until the next due time."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from campaigns import lifecycle, metrics, windows
from campaigns.clock import real_seconds_to_app
from campaigns.db import normalize_url, unit_of_work
from campaigns.events import NOTIFY_CHANNEL
from worker.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

Enqueue = Callable[[list[str]], None]


def celery_enqueue(attempt_ids: list[str]) -> None:
    from worker.tasks import dispatch_attempts

    dispatch_attempts.delay(attempt_ids)


MAX_QUEUED_BATCHES = 100
"""Claim nothing while more dispatch batches than this wait in the broker (backpressure).

Without it the scheduler claims everything due at once; batches that wait in the queue longer than the claim
lease are withdrawn by the reconciler and claimed again, each time leaving a stale message behind, and a big
backlog can churn instead of draining (found by the kill -9 chaos run). Claiming just in time also runs the
calling-window and pacing checks close to the moment of dialing."""


class CeleryBacklog:
    """Dispatch batches waiting in the broker's default queue (0 when Redis cannot say: enqueueing will tell).

    Keeps one broker connection across calls: the loop asks before every claim, and opening a connection each
    time cost ~15% of the scheduler's CPU under load (issue 7 profile). A failed read drops it; the next call
    opens a new one.
    """

    def __init__(self, app: Any = None) -> None:
        if app is None:
            from worker.celery_app import app
        self.app = app
        self._connection: Any = None

    def __call__(self) -> int:
        try:
            if self._connection is None:
                self._connection = self.app.connection_for_write()
            return int(self._connection.default_channel.client.llen(self.app.conf.task_default_queue))
        except Exception:
            self.close()
            return 0

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.release()
            except Exception:
                log.debug("closing the backlog connection failed", exc_info=True)


def run_once(
    rt: Runtime, enqueue: Enqueue, *, checks: Sequence[lifecycle.ClaimCheck] | None = None, chunk: int | None = None
) -> int:
    """Claim one batch and enqueue it once the claim has committed. Returns how many were claimed."""
    started = time.perf_counter()
    with unit_of_work(rt.sessions) as session:
        claimed = lifecycle.claim_due_events(
            session,
            now=rt.clock.now(),
            limit=rt.settings.claim_batch_size,
            lease=real_seconds_to_app(rt.clock, rt.settings.claim_lease_secs),
            providers=rt.providers,
            checks=lifecycle.default_checks(rt.settings) if checks is None else checks,
        )
    metrics.CLAIM_DURATION.observe(time.perf_counter() - started)
    if claimed:
        metrics.CLAIM_BATCH_SIZE.observe(len(claimed))
    ids = [str(c.attempt_id) for c in claimed]
    chunk = chunk or rt.settings.dispatch_batch_size
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

    def __init__(
        self, rt: Runtime, enqueue: Enqueue = celery_enqueue, backlog: Callable[[], int] | None = None
    ) -> None:
        self.rt = rt
        self.enqueue = enqueue
        self.backlog = backlog if backlog is not None or enqueue is not celery_enqueue else CeleryBacklog()
        self.stopping = threading.Event()
        self.iterations = 0
        self.last_iteration = time.monotonic()

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
                self.last_iteration = loop_started = time.monotonic()
                if self.backlog is not None and self.backlog() >= MAX_QUEUED_BATCHES:
                    self.stopping.wait(0.05)  # the workers are behind: let them drain before claiming more
                    continue
                try:
                    claimed = run_once(self.rt, self.enqueue)
                except Exception:
                    log.exception("claim failed; retrying shortly")
                    self.stopping.wait(1.0)
                    continue
                metrics.SCHEDULER_HEARTBEAT.set_to_current_time()  # a successful claim, not just a live loop
                if claimed >= self.rt.settings.claim_batch_size:
                    continue
                if claimed:
                    delay = 0.0  # a steady stream: more fall due within milliseconds, no need to ask when
                else:
                    try:
                        with unit_of_work(self.rt.sessions) as session:
                            delay = seconds_until(self.rt, lifecycle.next_due_at(session))
                    except Exception:
                        # The database can go away between the claim and here; keep the loop alive (it retries).
                        log.exception("reading the next due time failed; retrying shortly")
                        delay = 1.0
                # One claim per tick at most while less than a batch is due: a stream of 1,000 due/s claimed one
                # or two events at a time cost a transaction and a dispatch task each, and the CPU that took
                # delayed everything (issue 7: the stream benchmark's tail).
                delay = max(delay, self.rt.settings.scheduler_tick_secs - (time.monotonic() - loop_started))
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
            if isinstance(self.backlog, CeleryBacklog):
                self.backlog.close()
            log.info("scheduler stopped")

    def health(self) -> tuple[bool, str]:
        """Alive when the loop iterated recently (it wakes at least every ``scheduler_max_sleep_secs``)."""
        silent = time.monotonic() - self.last_iteration
        limit = max(30.0, 10 * self.rt.settings.scheduler_max_sleep_secs)
        return silent < limit, f"last iteration {silent:.1f}s ago"


def main(metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> None:
    windows.warm_up()
    scheduler = Scheduler(get_runtime())
    if metrics_port:
        from worker.metrics_server import serve_metrics

        serve_metrics(metrics_port, metrics_host, health=scheduler.health, token=scheduler.rt.settings.metrics_token)

    def stop(*_: object) -> None:
        scheduler.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.run()
