"""The real stack for end-to-end tests: ``campaigns simulator`` and ``campaigns up`` as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench import harness
from campaigns.telephony.signatures import private_key_b64, public_key_b64
from worker.embedded import free_port, wait_for_port

TOKEN = "e2e-token"


def poll(fn: Any, *, timeout: float, interval: float = 0.1) -> Any:
    """``harness.poll``, failing as an ``AssertionError`` (the tests catch it to print the stack's logs)."""
    try:
        return harness.poll(fn, timeout=timeout, interval=interval)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
    )


def healthz(api: httpx.Client) -> dict[str, Any] | None:
    try:
        response = api.get("/healthz")
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@dataclass
class Stack:
    api: str
    sim: str
    up: subprocess.Popen[bytes]
    logs: Path

    def __getitem__(self, key: str) -> Any:  # the tests written against the old dict fixture
        return {"api": self.api, "sim": self.sim, "up": self.up, "logs": self.logs}[key]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def tail(self, chars: int = 5000) -> str:
        return (self.logs / "up.log").read_text()[-chars:]


@contextmanager
def running_stack(
    database_url: str,
    redis_url: str,
    logs: Path,
    *,
    env: Mapping[str, str] | None = None,
    sim_args: Sequence[str] = ("--ring-delay", "0.1", "--talk-delay", "0.2"),
) -> Iterator[Stack]:
    """Simulator + ``campaigns up`` on free loopback ports, stopped with Ctrl-C (then killed) afterwards.

    The stack gets a private redis-server of its own (``redis_url`` is only kept for the callers' signature): a
    Celery worker of another test or test run on a shared server would otherwise take this stack's tasks and find
    none of its attempts in its own database (a random database number on the shared server can collide).
    """
    with harness.redis_server() as private_redis:
        key = Ed25519PrivateKey.generate()
        sim_port, api_port = free_port(), free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
        environment.update(
            {
                "CAMPAIGNS_SIMULATOR_PRIVATE_KEY": private_key_b64(key),
                "CAMPAIGNS_DATABASE_URL": database_url,
                "CAMPAIGNS_REDIS_URL": private_redis.url,
                "CAMPAIGNS_API_TOKEN": TOKEN,
                "CAMPAIGNS_TELNYX_API_KEY": "KEY_E2E",
                "CAMPAIGNS_TELNYX_BASE_URL": f"http://127.0.0.1:{sim_port}/v2",
                "CAMPAIGNS_TELNYX_PUBLIC_KEY": public_key_b64(key),
                "CAMPAIGNS_TELNYX_TEXML_APP_ID": "texml-e2e",
                "CAMPAIGNS_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
                "CAMPAIGNS_RECONCILE_INTERVAL_SECS": "2",
                **(env or {}),
            }
        )
        sim = spawn(["simulator", "--port", str(sim_port), *sim_args], environment, logs / "sim.log")
        up = spawn(["up", "--port", str(api_port)], environment, logs / "up.log")
        try:
            wait_for_port(sim_port, timeout=30)
            wait_for_port(api_port, timeout=60)
            yield Stack(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}", up, logs)
        finally:
            for process in (up, sim):
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
            for process in (up, sim):
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
