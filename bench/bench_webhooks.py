"""Signed webhooks verified and applied per second, and the acknowledgement time of each.

    .venv/bin/python bench/bench_webhooks.py --calls 20000 --concurrency 32 --repeat 3

A scratch database holds ``--calls`` events in progress, each with a dispatched attempt. One ``campaigns api``
process receives, for every call, a signed TeXML ``completed`` status callback (Ed25519 over
``timestamp|body``, verified before anything else), stores the receipt and completes the event. The load
generator (one asyncio process with ``--concurrency`` connections) runs on the same machine and takes CPU from
the API. Reports webhooks/s, p50/p99/max acknowledgement time, and checks that every event ended completed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

from campaigns.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, public_key_b64, sign


async def fire(api: str, key: Ed25519PrivateKey, calls: list[tuple[str, str]], concurrency: int) -> list[float]:
    latencies: list[float] = []
    retried: list[str] = []
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            attempt_id, sid = queue.get_nowait()
            body = urlencode({"CallSid": sid, "CallStatus": "completed", "SequenceNumber": "3",
                              "CallDuration": "42", "To": "+12125550000", "From": "+15553456789"}).encode()  # fmt: skip
            timestamp = str(int(time.time()))
            headers = {"content-type": "application/x-www-form-urlencoded",
                       SIGNATURE_HEADER: sign(key, timestamp, body), TIMESTAMP_HEADER: timestamp}  # fmt: skip
            started = time.perf_counter()
            for _try in range(3):  # a keep-alive connection closed by the server under us: send again, as Telnyx does
                try:
                    response = await client.post(f"/webhooks/telnyx/call-status?attempt_id={attempt_id}",
                                                 content=body, headers=headers)  # fmt: skip
                    break
                except httpx.TransportError:
                    retried.append(attempt_id)
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api, limits=limits, timeout=30.0) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    if retried:
        print(f"  {len(retried)} posts sent again after a dropped connection", flush=True)
    return latencies


def run(calls: int, concurrency: int) -> tuple[float, list[float]]:
    key = Ed25519PrivateKey.generate()
    with (
        harness.scratch_database() as url,
        harness.redis_server() as redis,
        tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp,
    ):
        with psycopg.connect(harness.dsn(url)) as conn:
            pairs = [(attempt, sid) for attempt, _, sid in harness.seed_sent_attempts(conn, calls, "bench")]
        port = harness.free_port()
        env = {**harness.base_env(), "CAMPAIGNS_DATABASE_URL": url, "CAMPAIGNS_REDIS_URL": redis.url,
               "CAMPAIGNS_TELNYX_PUBLIC_KEY": public_key_b64(key)}  # fmt: skip
        with harness.processes(env, Path(tmp)) as procs:
            procs.cli("api", "api", "--port", str(port))
            harness.wait_for_port(port)
            asyncio.run(fire(f"http://127.0.0.1:{port}", key, pairs[:50], 8))  # warm up
            started = time.perf_counter()
            latencies = asyncio.run(fire(f"http://127.0.0.1:{port}", key, pairs[50:], concurrency))
            elapsed = time.perf_counter() - started
        with psycopg.connect(harness.dsn(url)) as conn:
            row = conn.execute("SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FROM scheduled_events")
            completed, total = row.fetchone() or (0, 0)
            receipts = conn.execute("SELECT count(*) FROM webhook_receipts").fetchone()
        assert completed == total == calls, f"{completed} of {total} events completed"
        assert receipts is not None and receipts[0] == calls
    return (calls - 50) / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    harness.exit_on_sigterm()
    print(harness.machine(), flush=True)
    rates, p50s, p99s, maxes = [], [], [], []
    for rep in range(1, args.repeat + 1):
        rate, latencies = run(args.calls, args.concurrency)
        rates.append(rate)
        p50s.append(harness.percentile(latencies, 50))
        p99s.append(harness.percentile(latencies, 99))
        maxes.append(max(latencies))
        print(f"run {rep}: {rate:,.0f} webhooks/s, ack p50 {p50s[-1]:.1f} ms p99 {p99s[-1]:.1f} ms "
              f"max {maxes[-1]:.1f} ms; every event completed, one receipt each", flush=True)  # fmt: skip
    print(f"median: {harness.median(rates):,.0f} webhooks/s, ack p50 {harness.median(p50s):.1f} ms "
          f"p99 {harness.median(p99s):.1f} ms max {harness.median(maxes):.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
