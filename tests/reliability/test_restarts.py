"""Redis killed and restarted, then PostgreSQL stopped (immediate) and restarted, in the middle of a campaign.

Redis is a private redis-server and PostgreSQL a private cluster (initdb into a temporary directory), so the
shared servers are never touched. The stack runs as separate processes (api, scheduler, worker, beat) with no
supervisor: it has to recover by itself, every process still running at the end.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from bench import harness
from tests.reliability.stack import FULL, Stack, wait_settled

# The waits below add up to more than pytest's default 120 s; a run where a callback is lost in the PostgreSQL
# outage also waits out the 60 s call lease before that event fails closed.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200 if FULL else 600)]

EVENTS = 3000 if FULL else 400
OUTAGE_SECS = 3.0


def _attempts(stack: Stack) -> int:
    try:
        with psycopg.connect(stack.dsn(), connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM call_attempts").fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row else 0


def test_redis_and_postgres_restarts(tmp_path: Path) -> None:
    with harness.postgres_cluster() as pg, harness.redis_server() as redis:
        from worker.migrate import upgrade

        upgrade(pg.url)
        stack = Stack(database_url=pg.url, redis=redis, logs=tmp_path / "logs")
        try:
            stack.start_simulator("completed=0.6,busy=0.2,no-answer=0.2")
            stack.insert_events(EVENTS, retries=1, spread_secs=0.03)
            for name in ("api", "beat", "worker", "scheduler"):
                stack.start(name)
            harness.poll(lambda: _attempts(stack) >= EVENTS // 5, timeout=120, what="a fifth of the events dialled")
            redis.stop(signal.SIGKILL)
            time.sleep(OUTAGE_SECS)
            redis.start()
            before = _attempts(stack)
            harness.poll(lambda: _attempts(stack) >= before + EVENTS // 5, timeout=120,
                         what="progress after the Redis restart")  # fmt: skip
            pg.stop("immediate")
            time.sleep(OUTAGE_SECS)
            pg.start()
            wait_settled(stack, timeout=600 if FULL else 240)
            observed = stack.check()
            dead = {name: p.returncode for name, p in stack.running.items() if p.poll() is not None}
            print(f"\nrestarts: Redis SIGKILL + {OUTAGE_SECS}s down, PostgreSQL immediate stop + {OUTAGE_SECS}s down; "
                  f"observed {observed}; processes that exited: {dead}")  # fmt: skip
            assert not dead, f"processes did not survive the outages: {dead}; logs in {stack.logs}"
            assert observed["events"] == EVENTS
        finally:
            stack.stop()
