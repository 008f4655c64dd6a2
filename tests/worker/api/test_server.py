"""The API's listener limits on a real uvicorn: half-sent requests are closed, whole ones answered."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from worker.api import create_app
from worker.api.server import H11WithHeaderDeadline, HttpToolsWithHeaderDeadline, server_options
from worker.embedded import free_port, wait_for_port
from worker.runtime import Runtime


class QuickH11(H11WithHeaderDeadline):
    header_timeout = 0.5


class QuickHttpTools(HttpToolsWithHeaderDeadline):
    header_timeout = 0.5


@pytest.fixture(params=[QuickHttpTools, QuickH11], ids=["httptools", "h11"])
def served(request: pytest.FixtureRequest, runtime: Runtime) -> Iterator[int]:
    port = free_port()
    options = {**server_options(runtime.settings), "http": request.param, "timeout_keep_alive": 1}
    config = uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port, timeout=10)
    yield port
    server.should_exit = True
    thread.join(10)


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds``, and what it sent before."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    received = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def test_a_half_sent_request_is_closed(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        closed, _ = closed_within(sock, 5)
    assert closed


def test_a_trickled_request_is_closed_at_the_deadline_not_kept_alive_by_each_byte(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        started = time.monotonic()
        closed = False
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)  # the client's pace, not a wait for the server
        if not closed:
            closed, _ = closed_within(sock, 5)
    assert closed and time.monotonic() - started < 6


def test_a_whole_request_is_answered_and_an_idle_connection_closed(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        closed, answer = closed_within(sock, 5)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    assert closed  # keep-alive timeout (1 s here) after the answer
    with socket.create_connection(("127.0.0.1", served)) as silent:
        closed, answer = closed_within(silent, 5)  # a connection that never sends a byte
    assert closed and answer == b""


def test_oversized_headers_are_refused(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        closed, answer = closed_within(sock, 5)
    assert closed and not answer.startswith(b"HTTP/1.1 200"), answer[:100]
