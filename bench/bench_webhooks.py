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

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

from campaigns.telephony.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, public_key_b64, sign


def signed_posts(key: Ed25519PrivateKey, calls: list[tuple[str, str]]) -> list[bytes]:
    """Every callback as the raw HTTP/1.1 request Telnyx would send, signed before the clock starts.

    Signing is the sender's work, not the receiver's: doing it up front keeps the load generator's CPU (on the
    same two cores) off the API's.
    """
    posts = []
    for attempt_id, sid in calls:
        body = urlencode({"CallSid": sid, "CallStatus": "completed", "SequenceNumber": "3",
                          "CallDuration": "42", "To": "+12125550000", "From": "+15553456789"}).encode()  # fmt: skip
        timestamp = str(int(time.time()))
        head = (
            f"POST /webhooks/telnyx/call-status?attempt_id={attempt_id} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            f"content-type: application/x-www-form-urlencoded\r\ncontent-length: {len(body)}\r\n"
            f"{SIGNATURE_HEADER}: {sign(key, timestamp, body)}\r\n{TIMESTAMP_HEADER}: {timestamp}\r\n\r\n"
        )
        posts.append(head.encode() + body)
    return posts


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, post: bytes) -> tuple[int, bytes]:
    writer.write(post)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
    return status, await reader.readexactly(length)


async def fire(port: int, posts: list[bytes], concurrency: int) -> list[float]:
    """Send every post over ``concurrency`` keep-alive connections; the acknowledgement time of each, in ms.

    A minimal HTTP/1.1 client on asyncio streams: a general-purpose client (httpx) spent most of its time in its
    connection pool and made itself the bottleneck of this benchmark.
    """
    latencies: list[float] = []
    retried: list[int] = []
    pending = iter(posts)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for post in pending:
            started = time.perf_counter()
            for _try in range(3):  # a keep-alive connection closed by the server under us: send again, as Telnyx does
                try:
                    status, answer = await _exchange(reader, writer, post)
                    break
                except (ConnectionError, asyncio.IncompleteReadError):
                    retried.append(1)
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
            latencies.append((time.perf_counter() - started) * 1000)
            assert status == 200, answer
        writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    if retried:
        print(f"  {len(retried)} posts sent again after a dropped connection", flush=True)
    return latencies


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _cpu(api: int, postmaster: int | None) -> dict[str, float]:
    """CPU seconds so far: the API (all its processes), PostgreSQL (every backend of the server, when this user
    can read them), and this load generator."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "api": harness.cpu_seconds(api),
        "postgresql": harness.cpu_seconds(postmaster) if postmaster else 0.0,
        "load generator": usage.ru_utime + usage.ru_stime,
    }


def run(calls: int, concurrency: int, api_workers: int) -> tuple[float, list[float]]:
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
            api = procs.cli("api", "api", "--port", str(port), "--workers", str(api_workers))
            harness.wait_for_port(port)
            posts = signed_posts(key, pairs)
            asyncio.run(fire(port, posts[: 50 * api_workers], 8))  # warm up (every process)
            with psycopg.connect(harness.dsn(url)) as conn:
                backend = conn.execute("SELECT pg_backend_pid()").fetchone()
            postmaster = _parent(int(backend[0])) if backend else None
            cpu_before = _cpu(api.pid, postmaster)
            started = time.perf_counter()
            latencies = asyncio.run(fire(port, posts[50 * api_workers :], concurrency))
            elapsed = time.perf_counter() - started
            cpu_after = _cpu(api.pid, postmaster)
            sent = calls - 50 * api_workers
            used = {name: (cpu_after[name] - cpu_before[name]) * 1000 / sent for name in cpu_after}
            print("  CPU ms per webhook: " + ", ".join(f"{k} {v:.3f}" for k, v in used.items()), flush=True)
        with psycopg.connect(harness.dsn(url)) as conn:
            row = conn.execute("SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FROM scheduled_events")
            completed, total = row.fetchone() or (0, 0)
            receipts = conn.execute("SELECT count(*) FROM webhook_receipts").fetchone()
        assert completed == total == calls, f"{completed} of {total} events completed"
        assert receipts is not None and receipts[0] == calls
    return (calls - 50 * api_workers) / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--api-workers", type=int, default=1, help="`campaigns api --workers`")
    args = parser.parse_args()
    harness.exit_on_sigterm()
    print(harness.machine(), flush=True)
    rates, p50s, p99s, maxes = [], [], [], []
    for rep in range(1, args.repeat + 1):
        rate, latencies = run(args.calls, args.concurrency, args.api_workers)
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
