"""Operations: ``/healthz`` (the app's time), ``/readyz`` (database and Redis reachable, the provider accepting
the account), ``/metrics``."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text

from campaigns import metrics as app_metrics
from campaigns.metrics_database import DatabaseCollector
from worker.api.deps import RuntimeDep
from worker.api.schemas.operations import Health, Readiness
from worker.runtime import Runtime

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz(runtime: RuntimeDep) -> dict[str, str]:
    return {"status": "ok", "time": runtime.clock.now().isoformat()}


def _ping_database(runtime: Runtime) -> None:
    with runtime.sessions() as s:
        s.execute(text("SELECT 1"))


def _provider_holds(runtime: Runtime) -> str:
    """``ok``, or what the provider refuses (one open hold per adapter at most: a short line)."""
    from campaigns.lifecycle import holds

    with runtime.sessions() as s:
        held = holds.open_holds(s)
    return "; ".join(f"held ({hold.provider}): {hold.detail}" for hold in held) or "ok"


def readyz_client_name() -> str:
    """What the readiness client calls itself on Redis (``CLIENT LIST``): per process."""
    return f"campaigns-readyz-{os.getpid()}"


@lru_cache(maxsize=4)
def _redis_client(url: str) -> Any:
    """One client (and its pool of at most 2 connections) per Redis URL for the process: each ``/readyz`` opened
    a connection of its own before, and 32 callers at once slowed every other request (issue 19 item 13)."""
    import redis

    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=2, timeout=2, socket_connect_timeout=2, socket_timeout=2, client_name=readyz_client_name()
    )
    return redis.Redis(connection_pool=pool)


def _ping_redis(runtime: Runtime) -> None:
    _redis_client(runtime.settings.redis_url or "redis://127.0.0.1:6379/0").ping()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "The database or Redis is unreachable",
        }
    },
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, ping in (("database", _ping_database), ("redis", _ping_redis)):
        try:
            await run_in_threadpool(ping, runtime)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unreachable: {type(exc).__name__}"
    if checks["database"] == "ok":
        try:
            checks["provider"] = await run_in_threadpool(_provider_holds, runtime)
        except Exception as exc:
            checks["provider"] = f"unknown: {type(exc).__name__}"
    # A held provider (a wrong key) is reported, not made "not ready": the api must keep taking the webhooks of the
    # calls already placed, and an orchestrator would take a not-ready api out of service.
    ok = checks["database"] == "ok" and checks["redis"] == "ok"
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable", **checks}
    return JSONResponse(Readiness.model_validate(body).model_dump(), status_code=200 if ok else 503)


class MetricsExposition:
    """The API process's registry, built on first use: the runtime may not exist when the app is created."""

    def __init__(self) -> None:
        self._registry: CollectorRegistry | None = None

    def __call__(self, runtime: Runtime) -> bytes:
        if self._registry is None:
            collector = DatabaseCollector(runtime.sessions, runtime.clock.now)
            self._registry = app_metrics.api_registry(collector)
        return generate_latest(self._registry)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
async def metrics(request: Request, runtime: RuntimeDep) -> PlainTextResponse:
    """This process's metrics (every process's, in multiprocess mode) and the database gauges."""
    exposition: MetricsExposition = request.app.state.metrics
    return PlainTextResponse((await run_in_threadpool(exposition, runtime)).decode(), media_type=CONTENT_TYPE_LATEST)
