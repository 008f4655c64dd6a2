"""The ASGI guard in front of FastAPI: token and loopback before any body byte, body caps while streaming."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from campaigns.clock import FrozenClock
from tests.factories import call_body
from worker.api import create_app
from worker.runtime import Runtime

pytestmark = pytest.mark.anyio
TOKEN = "guard-token"
MB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def with_settings(runtime: Runtime, **changes: Any) -> Runtime:
    return dataclasses.replace(runtime, settings=runtime.settings.model_copy(update=changes))


class CountingBody:
    """A streamed body of ``total`` bytes (no Content-Length) that counts what the server pulled."""

    def __init__(self, total: int, prefix: bytes = b"") -> None:
        self.total = total
        self.prefix = prefix
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.prefix:
            self.sent += len(self.prefix)
            yield self.prefix
        block = b"x" * (256 * 1024)
        while self.sent < self.total:
            self.sent += len(block)
            yield block


def client(runtime: Runtime, host: str = "127.0.0.1", token: str | None = TOKEN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=create_app(runtime))
    return httpx.AsyncClient(transport=transport, base_url=f"http://{host}", headers=headers, timeout=30)


MULTIPART = b'--b\r\nContent-Disposition: form-data; name="file"; filename="l.csv"\r\n\r\nphone\n'


async def test_unauthenticated_500_mb_upload_is_refused_before_10_mb_are_read(runtime: Runtime) -> None:
    rt = with_settings(runtime, api_token=TOKEN)
    body = CountingBody(500 * MB, MULTIPART)
    async with client(rt, token=None) as c:
        r = await c.post("/v1/campaigns", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 401, r.text
    assert r.json()["errors"][0]["code"] == "10009"
    assert body.sent < 10 * MB
    assert r.headers["connection"] == "close"


async def test_wrong_token_on_the_suppression_import_reads_no_body(runtime: Runtime) -> None:
    body = CountingBody(100 * MB)
    async with client(with_settings(runtime, api_token=TOKEN), token="wrong") as c:
        r = await c.post("/v1/suppressions/import", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 401
    assert body.sent < 10 * MB


async def test_an_authenticated_upload_is_cut_off_at_the_cap_while_it_streams(runtime: Runtime) -> None:
    rt = with_settings(runtime, api_token=TOKEN, max_upload_bytes=1 * MB)
    body = CountingBody(200 * MB, MULTIPART)
    async with client(rt) as c:
        r = await c.post("/v1/campaigns", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413, r.text
    assert "byte limit" in r.json()["errors"][0]["detail"]
    assert body.sent < 1 * MB + 3 * MB  # the cap (file + form overhead) and one block, not the 200 MB


async def test_a_declared_length_over_the_cap_is_refused_at_once(runtime: Runtime) -> None:
    rt = with_settings(runtime, api_token=TOKEN, max_upload_bytes=1 * MB)
    async with client(rt) as c:
        r = await c.post("/v1/suppressions/import", content=b"+12125550147\n" * 400_000)
    assert r.status_code == 413


async def test_a_1_mib_create_is_413(runtime: Runtime, clock: FrozenClock) -> None:
    big = call_body(clock.now(), dynamic_variables={"notes": "x" * MB})
    async with client(with_settings(runtime, api_token=TOKEN)) as c:
        declared = await c.post("/v2/ai/assistants/a1/scheduled_events", json=big)
        streamed = CountingBody(MB, json.dumps(big).encode())
        chunked = await c.post("/v2/ai/assistants/a1/scheduled_events", content=streamed)
        small = await c.post("/v2/ai/assistants/a1/scheduled_events", json=call_body(clock.now()))
    assert declared.status_code == 413, declared.text
    assert declared.json()["errors"][0]["title"] == "Request too large"
    assert chunked.status_code == 413, chunked.text
    assert small.status_code == 201, small.text


async def test_without_a_token_the_operator_api_answers_only_on_loopback(runtime: Runtime) -> None:
    async with client(runtime, host="10.20.30.40", token=None) as c:
        remote = await c.get("/v1/suppressions")
        health = await c.get("/healthz")
    async with client(runtime, host="127.0.0.1", token=None) as c:
        local = await c.get("/v1/suppressions")
    async with client(runtime, host="[::1]", token=None) as c:
        local6 = await c.get("/v2/ai/assistants/a1/scheduled_events")
    assert remote.status_code == 403, remote.text
    assert "CAMPAIGNS_API_TOKEN" in remote.json()["errors"][0]["detail"]
    assert health.status_code == 200
    assert local.status_code == 200 and local6.status_code == 200
    async with client(with_settings(runtime, api_token=TOKEN), host="10.20.30.40") as c:
        assert (await c.get("/v1/suppressions")).status_code == 200


async def test_metrics_want_the_metrics_token_when_it_is_set(runtime: Runtime) -> None:
    async with client(runtime, token=None) as c:
        assert (await c.get("/metrics")).status_code == 200
    rt = with_settings(runtime, metrics_token="scrape-secret")
    async with client(rt, token=None) as c:
        refused = await c.get("/metrics")
        allowed = await c.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert refused.status_code == 401
    assert allowed.status_code == 200 and "campaigns_" in allowed.text


async def test_readiness_checks_share_one_pooled_redis_connection(runtime: Runtime) -> None:
    import asyncio

    import redis

    from worker.api.operations import readyz_client_name

    async with client(runtime, token=None) as c:
        answers = await asyncio.gather(*(c.get("/readyz") for _ in range(32)))
    assert {r.status_code for r in answers} == {200}
    assert runtime.settings.redis_url is not None
    observer = redis.Redis.from_url(runtime.settings.redis_url)
    try:
        readyz = [entry for entry in observer.client_list() if entry.get("name") == readyz_client_name()]
    finally:
        observer.close()
    assert 1 <= len(readyz) <= 2, readyz


@pytest.mark.parametrize("path", ["/ui/campaigns/new", "/ui/do-not-contact/import"])
async def test_a_console_upload_without_a_session_is_refused_before_10_mb_are_read(runtime: Runtime, path: str) -> None:
    """The console's forms are parsed by FastAPI too: without a session cookie the guard answers first."""
    body = CountingBody(500 * MB, MULTIPART)
    async with client(with_settings(runtime, api_token=TOKEN), token=None) as c:
        r = await c.post(path, content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert (r.status_code, r.headers["location"]) == (303, "/ui/sign-in")
    assert body.sent < 10 * MB


async def test_a_signed_in_console_upload_is_cut_off_at_the_cap(runtime: Runtime) -> None:
    from worker.ui.auth import SESSION_COOKIE

    rt = with_settings(runtime, api_token=TOKEN, max_upload_bytes=1 * MB)
    async with client(rt, token=None) as c:
        page = await c.get("/ui/sign-in")
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        signed = await c.post("/ui/sign-in", data={"token": TOKEN, "csrf_token": csrf})
        assert signed.status_code == 303 and SESSION_COOKIE in c.cookies, signed.text
        body = CountingBody(200 * MB, MULTIPART)
        r = await c.post("/ui/campaigns/new", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413
    assert body.sent < 1 * MB + 3 * MB


async def test_without_a_token_the_console_answers_only_on_loopback(runtime: Runtime) -> None:
    async with client(with_settings(runtime, api_token=None), host="10.1.2.3", token=None) as c:
        assert (await c.get("/ui")).status_code == 403
