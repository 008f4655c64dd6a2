"""Helpers of the simulator tests: the in-process simulator, a real local receiver's records, signature checks."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from campaigns.telephony.signatures import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_public_key,
    private_key_b64,
    public_key_b64,
    verify,
)
from worker.simulator import SimulatorConfig, create_app

KEY = Ed25519PrivateKey.generate()
AUTH = {"Authorization": "Bearer test-key"}
TEXML = "/v2/texml/ai_calls/texml-app-1"


# -- what a real HTTP receiver on 127.0.0.1 records ------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path_prefix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (yielding to the simulator's tasks) until true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)


def assert_signed(request: Received) -> None:
    verify(
        load_public_key(public_key_b64(KEY)),
        signature=request.headers.get(SIGNATURE_HEADER),
        timestamp=request.headers.get(TIMESTAMP_HEADER),
        body=request.body,
        real_now=datetime.now(UTC),
    )


def fast_config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "ring_delay": 0.01,
        "talk_delay": 0.01,
        "private_key_b64": private_key_b64(KEY),
        "response_delay_on_timeout": 5.0,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


@asynccontextmanager
async def simulator(config: SimulatorConfig | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config or fast_config())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim", headers=AUTH) as client:
            yield client


def texml_body(to: str, callback: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"From": "+15550000000", "To": to, "AIAssistantId": "assistant-1"}
    if callback is not None:
        body["StatusCallback"] = callback
    return body


def dial_body(to: str, webhook_url: str, command_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "connection_id": "cc-1",
        "from": "+15550000000",
        "to": to,
        "webhook_url": webhook_url,
        "client_state": "c3RhdGU=",
        "assistant": {"id": "assistant-1", "dynamic_variables": {"name": "Ada"}},
    }
    if command_id is not None:
        body["command_id"] = command_id
    return body
