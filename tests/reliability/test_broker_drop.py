"""The worker survives Redis dropping while a dispatch task is in flight (unacknowledged), deterministically.

test_restarts.py kills Redis at a random moment of a campaign, so whether a task is unacknowledged at that moment
is luck. Here the provider is a socket that accepts connections and never answers, so the dispatch task is
certainly in flight (its attempt committed as ``sending``) when Redis is killed. Celery 5.7.0 died at this point
("Unrecoverable error: AttributeError ... 'hostname'" from kombu's restore_unacked); the worker must instead
reconnect and answer a broker ping once Redis is back, and the in-flight event must still end terminal.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator

import psycopg
import pytest
from celery import Celery

from bench import harness
from tests.reliability.stack import Stack, wait_settled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
def silent_provider() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never sends a byte back."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def _sending(stack: Stack) -> int:
    with psycopg.connect(stack.dsn(), connect_timeout=3) as conn:
        row = conn.execute("SELECT count(*) FROM call_attempts WHERE state = 'sending'").fetchone()
    return int(row[0]) if row else 0


def _worker_answers(broker: str) -> bool:
    app = Celery(broker=broker)
    try:
        return bool(app.control.ping(timeout=1.0))
    except Exception:  # Redis still coming back: not answering yet
        return False
    finally:
        app.close()


def test_worker_survives_broker_drop_with_task_in_flight(stack: Stack, silent_provider: int) -> None:
    stack.procs.env["CAMPAIGNS_TELNYX_BASE_URL"] = f"http://127.0.0.1:{silent_provider}/v2"
    stack.procs.env["CAMPAIGNS_PROVIDER_TIMEOUT_SECS"] = "15"
    stack.procs.env["CAMPAIGNS_CALL_LEASE_SECS"] = "20"
    stack.insert_events(1, retries=0)
    stack.start("worker")
    stack.start("scheduler")
    stack.start("beat")
    harness.poll(lambda: _sending(stack) == 1, timeout=60, what="the dispatch task holding an unanswered request")

    stack.redis.stop(signal.SIGKILL)
    time.sleep(1.0)  # the outage itself, not a wait for work
    stack.redis.start()

    harness.poll(lambda: _worker_answers(stack.redis.url), timeout=90, what="the worker answering a broker ping")
    worker = stack.running["worker"]
    assert worker.poll() is None, f"the worker exited ({worker.returncode}); logs in {stack.logs}"
    # The request never got an answer: once the call lease runs out the reconciler fails the event closed (outcome
    # unknown); it is not dialled again.
    wait_settled(stack, timeout=120)
    assert stack.counts() == {"failed": 1}
