"""The two peer implementations of "send each scheduled call at its time", for bench_dispatch.py.

Both do the same work per event as the engine: claim the event (``pending`` → ``in_progress``, an attempt row
committed before the request), POST the call to the simulator (``/v2/texml/ai_calls/…``, the same body shape),
then record the provider's id on the attempt. They use plain SQL on two small tables (``peer_events``,
``peer_attempts``), which is cheaper per event than the engine's full schema: the comparison favours them.

(a) Celery with ``eta``: one task per event, ``apply_async(eta=due)``; the straightforward Celery design that
    DESIGN.md rejects (ETAs are held in worker memory and re-delivered after the visibility timeout).
(b) PgQueuer (PostgreSQL job queue, ``pgq run bench.peers:pgqueuer_main``): one job per event enqueued with
    ``execute_after``; asyncpg driver and an entrypoint, as its README shows.

Environment: ``BENCH_PEER_DSN`` (libpq DSN), ``BENCH_PEER_REDIS`` (Celery broker), ``BENCH_SIM_URL``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_events (
    id bigint PRIMARY KEY, due_at timestamptz NOT NULL, status text NOT NULL DEFAULT 'pending',
    to_number text NOT NULL
);
CREATE TABLE IF NOT EXISTS peer_attempts (
    id bigserial PRIMARY KEY, event_id bigint NOT NULL REFERENCES peer_events(id), claimed_at timestamptz NOT NULL,
    attempted_at timestamptz, recorded_at timestamptz, provider_id text, state text NOT NULL DEFAULT 'sending',
    UNIQUE (event_id)
);
"""

CLAIM = """
WITH e AS (UPDATE peer_events SET status = 'in_progress' WHERE id = %s AND status = 'pending' RETURNING id, to_number)
INSERT INTO peer_attempts (event_id, claimed_at, attempted_at) SELECT id, clock_timestamp(), clock_timestamp() FROM e
RETURNING id, (SELECT to_number FROM e)
"""
RECORD = "UPDATE peer_attempts SET provider_id = %s, state = 'sent', recorded_at = clock_timestamp() WHERE id = %s"


def call_body(to: str, attempt_id: int) -> dict[str, Any]:
    return {"From": "+15553456789", "To": to, "AIAssistantId": "bench",
            "StatusCallback": f"http://127.0.0.1:9/webhooks/telnyx/call-status?attempt_id={attempt_id}"}  # fmt: skip


# --- (a) Celery eta -------------------------------------------------------------------------------------------

_local = threading.local()


def _sync_state() -> tuple[psycopg.Connection[Any], httpx.Client]:
    state = getattr(_local, "state", None)
    if state is None:
        conn = psycopg.connect(os.environ["BENCH_PEER_DSN"], autocommit=False)
        client = httpx.Client(base_url=os.environ["BENCH_SIM_URL"], headers={"Authorization": "Bearer KEY"},
                              timeout=10.0)  # fmt: skip
        state = _local.state = (conn, client)
    return state  # type: ignore[no-any-return]


def make_celery() -> Any:
    from celery import Celery

    app = Celery("peer", broker=os.environ.get("BENCH_PEER_REDIS", "redis://127.0.0.1:6379/0"))
    app.conf.update(task_acks_late=True, task_serializer="json", accept_content=["json"], task_ignore_result=True,
                    worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)  # fmt: skip

    @app.task(name="peer.dispatch")  # type: ignore[misc]
    def dispatch(event_id: int) -> None:
        conn, client = _sync_state()
        with conn.transaction():
            row = conn.execute(CLAIM, (event_id,)).fetchone()
        if row is None:
            return
        attempt_id, to = row
        response = client.post("/texml/ai_calls/bench", json=call_body(to, attempt_id))
        response.raise_for_status()
        with conn.transaction():
            conn.execute(RECORD, (response.json()["call_sid"], attempt_id))

    return app


celery_app = make_celery() if os.environ.get("BENCH_PEER_CELERY") else None


# --- (b) PgQueuer ---------------------------------------------------------------------------------------------


@asynccontextmanager
async def pgqueuer_main() -> AsyncIterator[Any]:
    """The ``pgq run`` factory (an async context manager since pgqueuer 1.x): an asyncpg connection, a
    PgQueuer, one entrypoint."""
    import asyncpg
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job

    dsn = os.environ["BENCH_PEER_DSN"]
    connection = await asyncpg.connect(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=8)
    client = httpx.AsyncClient(base_url=os.environ["BENCH_SIM_URL"], headers={"Authorization": "Bearer KEY"},
                               timeout=10.0)  # fmt: skip
    pgq = PgQueuer(AsyncpgDriver(connection))
    claim = CLAIM.replace("%s", "$1")
    record = RECORD.replace("%s", "$1", 1).replace("%s", "$2", 1)

    @pgq.entrypoint("dispatch")
    async def dispatch(job: Job) -> None:
        assert job.payload is not None
        event_id = int(job.payload)
        async with pool.acquire() as conn:
            row = await conn.fetchrow(claim, event_id)
        if row is None:
            return
        attempt_id, to = row[0], row[1]
        response = await client.post("/texml/ai_calls/bench", json=call_body(to, attempt_id))
        response.raise_for_status()
        async with pool.acquire() as conn:
            await conn.execute(record, response.json()["call_sid"], attempt_id)

    yield pgq
    await client.aclose()
    await pool.close()
    await connection.close()


def run_pgqueuer(batch_size: int = 10) -> None:
    """What ``pgq run bench.peers:pgqueuer_main`` does. pgqueuer 1.6.0's CLI fails before starting with this
    environment's typer (``setup_fancy_logger`` gets a ``str`` log level), so call the same supervisor directly."""
    from datetime import timedelta

    from pgqueuer.adapters.cli import cli, factories, supervisor
    from pgqueuer.domain.types import QueueExecutionMode

    cli.asyncio_run(
        supervisor.run(
            factories.load_factory("bench.peers:pgqueuer_main"),
            dequeue_timeout=timedelta(seconds=30),
            batch_size=batch_size,
            restart_delay=timedelta(seconds=5),
            restart_on_failure=False,
            mode=QueueExecutionMode.continuous,
            max_concurrent_tasks=None,
            shutdown_on_listener_failure=False,
            heartbeat_timeout=timedelta(seconds=30),
        )
    )


if __name__ == "__main__":
    import sys

    run_pgqueuer(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
