"""Callback delivery: the in-flight limit of the lanes."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.worker.simulator.support import dial_body, eventually, fast_config, simulator

pytestmark = pytest.mark.anyio


async def test_callbacks_beyond_the_in_flight_limit_wait_and_all_arrive() -> None:
    """A slow receiver never sees more than the in-flight limit at once, every queued callback still arrives, and
    ``GET /_simulator/deliveries`` tells the wait for a lane from the receiver's answer."""
    lanes = 8
    calls = lanes * 2
    lock = threading.Lock()
    seen = {"now": 0, "max": 0, "total": 0}

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                seen["now"] += 1
                seen["max"] = max(seen["max"], seen["now"])
            time.sleep(0.02)  # a slow receiver (not waiting for work): keeps requests overlapping
            with lock:
                seen["now"] -= 1
                seen["total"] += 1
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # every connection the simulator opens is accepted, none refused

    server = Server(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/slow"
    try:
        async with simulator(fast_config(ring_delay=0.0, talk_delay=0.0, callback_lanes=lanes)) as client:
            dials = [client.post("/v2/calls", json=dial_body(f"+1555100{i:04d}", url)) for i in range(calls)]
            assert {r.status_code for r in await asyncio.gather(*dials)} == {200}
            # initiated, answered, hangup, conversation.ended per call
            await eventually(lambda: seen["total"] == calls * 4, timeout=30)
            # The simulator notes a delivery once it has read the answer, just after the receiver counted it.
            deadline = time.monotonic() + 5
            stats = (await client.get("/_simulator/deliveries")).json()
            while stats["callbacks"] < calls * 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                stats = (await client.get("/_simulator/deliveries")).json()
    finally:
        server.shutdown()
        server.server_close()
    assert seen["max"] <= lanes
    assert seen["max"] > 1  # callbacks do overlap: the limit, not the receiver, bounded them
    assert stats["callbacks"] == calls * 4 and stats["lanes"] == lanes and stats["given_up"] == 0
    # 16 calls' callbacks through 8 lanes, each answer taking 20 ms: some waited for a lane, every answer took 20 ms
    assert stats["lane_wait_secs"]["max"] > 0
    assert stats["round_trip_secs"]["p50"] >= 0.02
