"""Claim cost with a large backlog of future pending events against an empty table.

    .venv/bin/python bench/bench_backlog.py --backlog 10000000 --claims 30

In a scratch database: time ``claim_due_events`` (batch of 200, committed) and ``next_due_at`` with only the due
events present, then add ``--backlog`` pending events due in the future (one INSERT … SELECT generate_series),
ANALYZE, and time the same claims again. Reports medians and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

INSERT = """
INSERT INTO scheduled_events (id, assistant_id, telnyx_conversation_channel, telnyx_end_user_target,
    telnyx_agent_target, scheduled_at_fixed_datetime, status, conversation_metadata, dynamic_variables,
    created_at, updated_at, errors, max_retries_client_errors, retry_count, cancel_requested, ruleset)
SELECT gen_random_uuid(), 'bench', 'phone_call', '+1' || (2120000000 + i)::text, '+15553456789',
    %(start)s + ((i - %(lo)s) * %(step)s) * interval '1 second', 'pending', '{}', '{}', now(), now(), '[]',
    0, 0, false, 'none'
FROM generate_series(%(lo)s, %(hi)s - 1) AS i
"""


def insert(url: str, lo: int, hi: int, start: datetime, step: float) -> None:
    with psycopg.connect(harness.dsn(url)) as conn:
        conn.execute(INSERT, {"lo": lo, "hi": hi, "start": start, "step": step})


def measure(url: str, claims: int, batch: int, now: datetime) -> tuple[list[float], list[float]]:
    from sqlalchemy.orm import sessionmaker

    from campaigns import lifecycle
    from campaigns.db import make_engine, unit_of_work
    from campaigns.settings import Settings
    from campaigns.telephony import providers_from_settings

    engine = make_engine(url)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    providers = providers_from_settings(Settings(telnyx_api_key="k", telnyx_texml_app_id="a"))
    claim_ms: list[float] = []
    next_ms: list[float] = []
    for _ in range(claims):
        started = time.perf_counter()
        with unit_of_work(factory) as s:
            claimed = lifecycle.claim_due_events(
                s, now=now, limit=batch, lease=timedelta(minutes=2), providers=providers, checks=()
            )
        claim_ms.append((time.perf_counter() - started) * 1000)
        assert len(claimed) == batch, f"expected {batch} due events, claimed {len(claimed)}"
        started = time.perf_counter()
        with unit_of_work(factory) as s:
            lifecycle.next_due_at(s)
        next_ms.append((time.perf_counter() - started) * 1000)
    engine.dispose()
    return claim_ms, next_ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=10_000_000)
    parser.add_argument("--claims", type=int, default=30)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    harness.exit_on_sigterm()
    print(harness.machine(), flush=True)
    now = datetime.now(UTC)
    due = args.claims * args.batch
    with harness.scratch_database() as url:
        insert(url, 0, due, now - timedelta(minutes=10), 0.001)
        with psycopg.connect(harness.dsn(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE scheduled_events")
        measure(url, 3, args.batch, now)  # warm up (and claim 3 batches, replaced below)
        insert(url, due, due + 3 * args.batch, now - timedelta(minutes=9), 0.001)
        empty_claim, empty_next = measure(url, args.claims, args.batch, now)
        started = time.perf_counter()
        chunk = 1_000_000
        for lo in range(0, args.backlog, chunk):
            insert(url, 10_000_000 + lo, 10_000_000 + min(args.backlog, lo + chunk), now + timedelta(days=1), 0.01)
            print(f"  backlog rows inserted: {min(args.backlog, lo + chunk):,}", flush=True)
        load_s = time.perf_counter() - started
        insert(url, 5_000_000, 5_000_000 + due + 3 * args.batch, now - timedelta(minutes=8), 0.001)
        with psycopg.connect(harness.dsn(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE scheduled_events")
            size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('scheduled_events'))").fetchone()
        measure(url, 3, args.batch, now)
        full_claim, full_next = measure(url, args.claims, args.batch, now)
    m_empty, m_full = harness.median(empty_claim), harness.median(full_claim)
    table = size[0] if size else "?"
    print(f"backlog {args.backlog:,} future pending rows loaded in {load_s:.0f}s; table + indexes {table}")
    p90_empty, p90_full = harness.percentile(empty_claim, 90), harness.percentile(full_claim, 90)
    print(
        f"claim {args.batch} (committed): empty {m_empty:.1f} ms (p90 {p90_empty:.1f}), "
        f"backlog {m_full:.1f} ms (p90 {p90_full:.1f}); ratio {m_full / m_empty:.2f}x"
    )
    print(f"next_due_at: empty {harness.median(empty_next):.2f} ms, backlog {harness.median(full_next):.2f} ms")


if __name__ == "__main__":
    main()
