"""Dispatch throughput and lag: the engine against Celery ``eta`` and PgQueuer, on the same machine, same run.

    .venv/bin/python bench/bench_dispatch.py --burst 100000 --rate 1000 --duration 30 --repeat 3

Two workloads, each with the simulator (``campaigns simulator --no-callbacks``) as the provider on loopback:

- burst: ``--burst`` events all due at once; events/s from the first claim to the last attempt recorded with the
  provider's id (claim → provider request → attempt recorded), and how long into the drain each was sent;
- stream: a steady ``--rate`` events due per second for ``--duration`` seconds; dispatch lag = provider request
  time - due time, p50 / p99 / max.

Work is loaded while no consumer runs (events inserted / tasks enqueued / jobs enqueued), then the consumers
start: the engine's scheduler + Celery worker, a Celery worker for the ``eta`` peer, ``pgq run`` for PgQueuer.
Every system gets a fresh database and a private Redis. Uses CAMPAIGNS_DATABASE_URL's server (default
127.0.0.1:5432) to create scratch databases.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

SYSTEMS = ("engine", "celery_eta", "pgqueuer")
LOGS = Path(tempfile.gettempdir()) / "campaigns-bench-logs"


@contextmanager
def _log_dir(prefix: str) -> Iterator[str]:
    """Where the processes of one run write their logs (kept, and named on failure)."""
    LOGS.mkdir(exist_ok=True)
    path = tempfile.mkdtemp(prefix=prefix, dir=LOGS)
    try:
        yield path
    except BaseException:
        print(f"  (logs of the failed run: {path})", flush=True)
        raise


@dataclass
class Result:
    system: str
    workload: str
    events: int
    seconds: float
    events_per_s: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    note: str = ""
    rss_mib: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_event: dict[str, float] = field(default_factory=dict)
    """CPU time each process used over the run, per event (the simulator's is the same work for every system)."""


def _cpu_per_event(pids: dict[str, int], n: int, before: dict[str, float]) -> dict[str, float]:
    """CPU ms per event of each process since ``before`` (CPU seconds by name; a process absent there: since
    it started)."""
    return {name: round((harness.cpu_seconds(pid) - before.get(name, 0.0)) * 1000 / n, 3) for name, pid in pids.items()}


def _start_simulator(procs: harness.Processes, port: int) -> subprocess.Popen[bytes]:
    """The provider for every system: the simulator without callbacks, answering at once."""
    simulator = procs.cli("simulator", "simulator", "--port", str(port), "--no-callbacks", "--ring-delay", "0")
    harness.wait_for_port(port)
    return simulator


def _poll_interval(n: int) -> float:
    """How often a run's completion is polled: each poll counts the attempts table (a scan of up to ``n`` rows,
    PostgreSQL CPU taken from the system under test), so large runs poll less often (0.1 s up to 20,000 events,
    0.5 s at 100,000: under 0.3% of the run's duration either way)."""
    return min(1.0, max(0.1, n / 200_000))


def _lags(rows: list[tuple[float]]) -> list[float]:
    return [max(0.0, float(r[0])) * 1000 for r in rows]


def _result(system: str, workload: str, n: int, seconds: float, lags: list[float], note: str = "") -> Result:
    return Result(system, workload, n, round(seconds, 2), round(n / seconds, 1),
                  round(harness.percentile(lags, 50), 1), round(harness.percentile(lags, 99), 1),
                  round(max(lags), 1), note)  # fmt: skip


def _due_times(n: int, rate: float | None, start: datetime) -> Callable[[int], datetime]:
    if rate is None:
        return lambda _i: start
    return lambda i: start + timedelta(seconds=i / rate)


# --- the engine -----------------------------------------------------------------------------------------------

INSERT_EVENTS = """
INSERT INTO scheduled_events (id, assistant_id, telnyx_conversation_channel, telnyx_end_user_target,
    telnyx_agent_target, scheduled_at_fixed_datetime, status, conversation_metadata, dynamic_variables,
    created_at, updated_at, errors, max_retries_client_errors, retry_count, cancel_requested, ruleset)
SELECT gen_random_uuid(), 'bench', 'phone_call', '+1212' || lpad((2000000 + i)::text, 7, '0'), '+15553456789',
    %(start)s + (i * %(step)s) * interval '1 second', 'pending', '{}', '{}', now(), now(), '[]', 0, 0, false, 'none'
FROM generate_series(0, %(n)s - 1) AS i
"""


def load_engine_events(url: str, n: int, start: datetime, rate: float | None) -> None:
    with psycopg.connect(harness.dsn(url)) as conn:
        conn.execute(INSERT_EVENTS, {"start": start, "step": 0 if rate is None else 1 / rate, "n": n})
        conn.execute("ANALYZE scheduled_events")


def engine_env(url: str, redis_url: str, sim_port: int) -> dict[str, str]:
    return {
        **harness.base_env(),
        "CAMPAIGNS_DATABASE_URL": url,
        "CAMPAIGNS_REDIS_URL": redis_url,
        "CAMPAIGNS_TELNYX_API_KEY": "KEY_BENCH",
        "CAMPAIGNS_MAX_DIALS_PER_SECOND": "100000",  # the simulator has no dial limit: measure the engine
        "CAMPAIGNS_TELNYX_BASE_URL": f"http://127.0.0.1:{sim_port}/v2",
        "CAMPAIGNS_TELNYX_TEXML_APP_ID": "bench",
        "CAMPAIGNS_PUBLIC_BASE_URL": "http://127.0.0.1:9",
        "CAMPAIGNS_LOG_JSON": "false",
    }


def run_engine(
    n: int,
    rate: float | None,
    *,
    lead: float,
    workers: list[list[str]],
    rss_every: float = 0.0,
    rss_log: list[dict[str, float]] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Result:
    with (
        harness.scratch_database() as url,
        harness.redis_server() as redis,
        _log_dir("bench-dispatch-") as tmp,
    ):
        sim_port = harness.free_port()
        env = {**engine_env(url, redis.url, sim_port), **(extra_env or {})}
        with harness.processes(env, Path(tmp)) as procs:
            simulator = _start_simulator(procs, sim_port)
            start = datetime.now(UTC) + timedelta(seconds=lead if rate is not None else 0)
            load_engine_events(url, n, start, rate)
            sim_cpu = harness.cpu_seconds(simulator.pid)
            loaded = time.monotonic()
            worker_procs = [procs.cli(f"worker{i}", "worker", *args) for i, args in enumerate(workers)]
            scheduler = procs.cli("scheduler", "scheduler")
            done = _wait_engine(url, n, timeout=max(600.0, n / 100), sample=rss_every, rss_log=rss_log,
                                pids={"scheduler": scheduler.pid, **{f"worker{i}": p.pid
                                                                     for i, p in enumerate(worker_procs)}})  # fmt: skip
            with psycopg.connect(harness.dsn(url)) as conn:
                first_claim = conn.execute("SELECT min(claimed_at) FROM call_attempts").fetchone()
                assert first_claim is not None and first_claim[0] is not None
                rows = conn.execute(
                    "SELECT extract(epoch FROM a.attempted_at - "
                    + ("min(a.claimed_at) OVER ()" if rate is None else "e.scheduled_at_fixed_datetime")
                    + ") FROM call_attempts a JOIN scheduled_events e ON e.id = a.event_id"
                ).fetchall()
                if rate is not None and os.environ.get("BENCH_LAG_TIMELINE"):
                    # Where in the stream the slow ones were: per second of due time, count and worst lag.
                    for second, count, worst, claim in conn.execute(
                        "SELECT floor(extract(epoch FROM e.scheduled_at_fixed_datetime - %s)), count(*),"
                        " max(extract(epoch FROM a.attempted_at - e.scheduled_at_fixed_datetime)),"
                        " max(extract(epoch FROM a.claimed_at - e.scheduled_at_fixed_datetime))"
                        " FROM call_attempts a JOIN scheduled_events e ON e.id = a.event_id GROUP BY 1 ORDER BY 1",
                        (start,),
                    ):
                        print(f"    due +{second:>4.0f}s  {count:>5} events  worst lag {worst * 1000:8.1f} ms"
                              f" (due → claimed {claim * 1000:8.1f} ms)")  # fmt: skip
                unknown = conn.execute("SELECT count(*) FROM call_attempts WHERE state = 'unknown'").fetchone()
                doubles = conn.execute(
                    "SELECT count(*) FROM (SELECT event_id FROM call_attempts GROUP BY 1 HAVING count(*) > 1) d"
                ).fetchone()
            rss = {name: round(harness.rss_mib(pid), 1) for name, pid in
                   {"scheduler": scheduler.pid, "worker": worker_procs[0].pid}.items()}  # fmt: skip
            cpu = _cpu_per_event({"scheduler": scheduler.pid, "simulator": simulator.pid,
                                  **{f"worker{i}": p.pid for i, p in enumerate(worker_procs)}}, n,
                                 {"simulator": sim_cpu})  # fmt: skip
    seconds = done - first_claim[0].timestamp()
    del loaded
    result = _result("engine", "burst" if rate is None else "stream", n, seconds, _lags(rows))
    if doubles and doubles[0]:
        result.note = f"{doubles[0]} events with more than one attempt"
    if unknown and unknown[0]:
        result.note += f" {unknown[0]} provider requests timed out (outcome unknown, not re-sent)"
    result.rss_mib = rss
    result.cpu_ms_per_event = cpu
    return result


def _wait_engine(
    url: str,
    n: int,
    *,
    timeout: float,
    sample: float,
    rss_log: list[dict[str, float]] | None,
    pids: dict[str, int],
) -> float:
    """Poll until every event's attempt is ``sent``; return the wall-clock (epoch) time it was first seen."""
    deadline = time.monotonic() + timeout
    next_sample = 0.0
    with psycopg.connect(harness.dsn(url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            # ``unknown``: the request left but its answer did not come back in time (never re-sent); it counts as
            # dispatched, and the run reports how many there were.
            row = conn.execute("SELECT count(*) FROM call_attempts WHERE state IN ('sent', 'unknown')").fetchone()
            now = time.time()
            if rss_log is not None and sample and time.monotonic() >= next_sample:
                next_sample = time.monotonic() + sample
                rss_log.append({"t": now, "sent": float(row[0] if row else 0),
                                **{k: harness.rss_mib(p) for k, p in pids.items()}})  # fmt: skip
            if row and row[0] >= n:
                return now
            time.sleep(_poll_interval(n))
    raise TimeoutError(f"engine: not all {n} events sent within {timeout}s")


# --- peers ----------------------------------------------------------------------------------------------------


def _peer_env(peer_dsn: str, redis_url: str, sim_port: int) -> dict[str, str]:
    return {
        **harness.base_env(),
        "BENCH_PEER_DSN": peer_dsn,
        "BENCH_PEER_REDIS": redis_url,
        "BENCH_SIM_URL": f"http://127.0.0.1:{sim_port}/v2",
        "PYTHONPATH": str(harness.ROOT),
    }


def _load_peer_events(peer_dsn: str, n: int, start: datetime, rate: float | None) -> None:
    import peers

    with psycopg.connect(peer_dsn) as conn:
        conn.execute(peers.SCHEMA)
        conn.execute(
            "INSERT INTO peer_events (id, due_at, to_number)"
            " SELECT i, %(start)s + (i * %(step)s) * interval '1 second',"
            " '+1212' || lpad((2000000 + i)::text, 7, '0') FROM generate_series(0, %(n)s - 1) AS i",
            {"start": start, "step": 0 if rate is None else 1 / rate, "n": n},
        )


def _peer_result(system: str, peer_dsn: str, n: int, rate: float | None, done: float, cpu: dict[str, float]) -> Result:
    with psycopg.connect(peer_dsn) as conn:
        first = conn.execute("SELECT min(claimed_at) FROM peer_attempts").fetchone()
        assert first is not None and first[0] is not None
        rows = conn.execute(
            "SELECT extract(epoch FROM a.attempted_at - "
            + ("min(a.claimed_at) OVER ()" if rate is None else "e.due_at")
            + ") FROM peer_attempts a JOIN peer_events e ON e.id = a.event_id"
        ).fetchall()
        last = conn.execute("SELECT max(recorded_at) FROM peer_attempts").fetchone()
    assert last is not None and last[0] is not None
    end = min(done, last[0].timestamp())
    result = _result(system, "burst" if rate is None else "stream", n, end - first[0].timestamp(), _lags(rows))
    result.cpu_ms_per_event = cpu
    return result


def _wait_peer(peer_dsn: str, n: int, timeout: float, procs: harness.Processes) -> float:
    deadline = time.monotonic() + timeout
    with psycopg.connect(peer_dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            dead = [p.args for p in procs.children if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a process exited: {dead}")
            row = conn.execute("SELECT count(*) FROM peer_attempts WHERE state = 'sent'").fetchone()
            if row and row[0] >= n:
                return time.time()
            time.sleep(_poll_interval(n))
    raise TimeoutError(f"peer: not all {n} events sent within {timeout}s")


def run_celery_eta(n: int, rate: float | None, *, lead: float, worker_args: list[str]) -> Result:
    with (
        harness.scratch_database(migrate=False, prefix="bench_peer") as url,
        harness.redis_server() as redis,
        _log_dir("bench-celery-") as tmp,
    ):
        sim_port = harness.free_port()
        peer_dsn = harness.dsn(url)
        env = {**_peer_env(peer_dsn, redis.url, sim_port), "BENCH_PEER_CELERY": "1"}
        with harness.processes(env, Path(tmp)) as procs:
            simulator = _start_simulator(procs, sim_port)
            start = datetime.now(UTC) + timedelta(seconds=lead if rate is not None else 0)
            _load_peer_events(peer_dsn, n, start, rate)
            os.environ.update({"BENCH_PEER_CELERY": "1", "BENCH_PEER_REDIS": redis.url})
            import importlib

            import peers

            importlib.reload(peers)
            app = peers.celery_app
            assert app is not None
            due = _due_times(n, rate, start)
            task = app.tasks["peer.dispatch"]
            with app.producer_or_acquire() as producer:
                for i in range(n):
                    task.apply_async((i,), eta=due(i), producer=producer)
            celery = [sys.executable, "-m", "celery", "-A", "bench.peers:celery_app", "worker", "--loglevel=WARNING"]
            sim_cpu = harness.cpu_seconds(simulator.pid)
            worker = procs.spawn("celery", [*celery, "--without-gossip", "--without-mingle", *worker_args])
            done = _wait_peer(peer_dsn, n, timeout=max(600.0, n / 100), procs=procs)
            cpu = _cpu_per_event({"worker": worker.pid, "simulator": simulator.pid}, n, {"simulator": sim_cpu})
            return _peer_result("celery_eta", peer_dsn, n, rate, done, cpu)


def run_pgqueuer(n: int, rate: float | None, *, lead: float, run_args: list[str]) -> Result:
    import asyncio

    with (
        harness.scratch_database(migrate=False, prefix="bench_peer") as url,
        harness.redis_server() as redis,
        _log_dir("bench-pgq-") as tmp,
    ):
        sim_port = harness.free_port()
        peer_dsn = harness.dsn(url)
        env = _peer_env(peer_dsn, redis.url, sim_port)
        with harness.processes(env, Path(tmp)) as procs:
            simulator = _start_simulator(procs, sim_port)
            pgq = str(Path(sys.executable).parent / "pgq")
            subprocess.run([pgq, "--pg-dsn", peer_dsn, "install"], check=True, capture_output=True, env=env)
            start = datetime.now(UTC) + timedelta(seconds=lead if rate is not None else 0)
            _load_peer_events(peer_dsn, n, start, rate)

            async def enqueue() -> None:
                import asyncpg
                from pgqueuer.db import AsyncpgDriver
                from pgqueuer.queries import Queries

                connection = await asyncpg.connect(peer_dsn)
                queries = Queries(AsyncpgDriver(connection))
                due = _due_times(n, rate, start)
                for lo in range(0, n, 5000):
                    ids = range(lo, min(n, lo + 5000))
                    now = datetime.now(UTC)
                    await queries.enqueue(
                        ["dispatch"] * len(ids),
                        [str(i).encode() for i in ids],
                        [0] * len(ids),
                        [max(timedelta(0), due(i) - now) for i in ids],
                    )
                await connection.close()

            asyncio.run(enqueue())
            sim_cpu = harness.cpu_seconds(simulator.pid)
            worker = procs.spawn("pgq", [sys.executable, "-m", "bench.peers", *run_args])
            done = _wait_peer(peer_dsn, n, timeout=max(600.0, n / 100), procs=procs)
            cpu = _cpu_per_event({"worker": worker.pid, "simulator": simulator.pid}, n, {"simulator": sim_cpu})
            return _peer_result("pgqueuer", peer_dsn, n, rate, done, cpu)


# --- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=100_000, help="events due at once (0 skips)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events due per second in the stream")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of stream (0 skips)")
    parser.add_argument("--lead", type=float, default=20.0, help="seconds between loading and the first due time")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--engine-worker", default="--pool threads --concurrency 8",
                        help="arguments of each `campaigns worker`; several workers separated by ';'")  # fmt: skip
    parser.add_argument(
        "--engine-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the engine's processes, e.g. CAMPAIGNS_DISPATCH_BATCH_SIZE=25 (repeatable)",
    )
    parser.add_argument("--celery-worker", default="--pool threads --concurrency 16")
    parser.add_argument("--pgq-run", default="10", help="PgQueuer batch size")
    parser.add_argument("--json", type=Path, help="append every result as a JSON line here")
    args = parser.parse_args()
    harness.exit_on_sigterm()
    print(harness.machine(), flush=True)
    systems = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"--systems: unknown {', '.join(unknown)} (choose from {', '.join(SYSTEMS)})")
    if "pgqueuer" in systems and not (Path(sys.executable).parent / "pgq").exists():
        parser.error("the PgQueuer peer needs the bench extra: pip install -e '.[bench]' (make bench does it)")
    engine_settings = dict(item.split("=", 1) for item in args.engine_env if "=" in item)
    if len(engine_settings) != len(args.engine_env):
        parser.error("--engine-env takes NAME=VALUE")
    workloads: list[tuple[str, int, float | None]] = []
    if args.burst:
        workloads.append(("burst", args.burst, None))
    if args.duration:
        workloads.append(("stream", int(args.rate * args.duration), args.rate))
    results: list[Result] = []
    for rep in range(1, args.repeat + 1):
        for workload, n, rate in workloads:
            for system in systems:
                if system == "engine":
                    workers = [w.split() for w in args.engine_worker.split(";")]
                    result = run_engine(n, rate, lead=args.lead, workers=workers, extra_env=engine_settings)
                elif system == "celery_eta":
                    result = run_celery_eta(n, rate, lead=args.lead, worker_args=args.celery_worker.split())
                else:
                    result = run_pgqueuer(n, rate, lead=args.lead, run_args=args.pgq_run.split())
                results.append(result)
                print(
                    f"run {rep} {workload:6} {system:10} {n:>7} events {result.seconds:7.2f}s "
                    f"{result.events_per_s:8.1f}/s lag p50 {result.lag_p50_ms:8.1f} ms "
                    f"p99 {result.lag_p99_ms:8.1f} ms max {result.lag_max_ms:8.1f} ms {result.note}"
                    f"\n      CPU ms/event: {', '.join(f'{k} {v}' for k, v in result.cpu_ms_per_event.items())}",
                    flush=True,
                )
                if args.json:
                    with args.json.open("a") as out:
                        out.write(json.dumps({"run": rep, **asdict(result)}) + "\n")
    print("\nmedians")
    for workload, _n, _rate in workloads:
        for system in systems:
            mine = [r for r in results if r.system == system and r.workload == workload]
            print(f"{workload:6} {system:10} {harness.median([r.events_per_s for r in mine]):8.1f}/s "
                  f"p50 {harness.median([r.lag_p50_ms for r in mine]):8.1f} ms "
                  f"p99 {harness.median([r.lag_p99_ms for r in mine]):8.1f} ms "
                  f"max {harness.median([r.lag_max_ms for r in mine]):8.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
