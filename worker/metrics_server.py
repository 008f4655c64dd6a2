"""The metrics port of the worker and the scheduler (the api serves ``/metrics`` itself), and the multiprocess
directory a process group shares.

``prepare_multiprocess`` must run before anything imports ``prometheus_client``: the client picks its value
storage (memory or per-process files) at import time. This module therefore imports it lazily.

``campaigns up`` gives every component it runs one directory (``group_multiprocess_dir``), so the api's
``/metrics`` is the group's: the provider requests counted by the worker and the scheduler's heartbeat are
there, not only the api's own counters (before, the api showed ``campaigns_provider_requests_total 0`` and
``campaigns_scheduler_last_iteration_timestamp_seconds 0`` because those live in other processes).
"""

from __future__ import annotations

import hmac
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, str]]


def prepare_multiprocess() -> str:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at a directory for this process group and return it.

    An operator-provided directory is used as is (it must start empty: one per worker pod or container);
    otherwise a fresh temporary one is created.
    """
    if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise RuntimeError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set")
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="campaigns-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    Path(directory).mkdir(parents=True, exist_ok=True)
    return directory


@contextmanager
def group_multiprocess_dir(env: Mapping[str, str]) -> Iterator[str]:
    """The ``PROMETHEUS_MULTIPROC_DIR`` every process of a group (``campaigns up``) writes its metrics to.

    The operator's (``env``), which must start empty, else a fresh temporary one, removed when the group stops:
    a file left by an earlier run would add that run's counters to this one's.
    """
    given = env.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="campaigns-metrics-") as directory:
        yield directory


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        threading.Thread(
            target=self._handle, args=(request, client_address), daemon=True, name="metrics-request"
        ).start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


def _bearer_matches(environ: WSGIEnvironment, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time (as the api's ``/metrics`` does)."""
    scheme, _, given = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_app(health: Health | None = None, token: str | None = None) -> WSGIApplication:
    """``/metrics`` (this process group's metrics; with ``token``, only for ``Authorization: Bearer <token>``,
    as the api's) and ``/healthz`` (``health``, else always ok; open, for liveness probes)."""
    from prometheus_client import make_wsgi_app

    from campaigns.metrics import process_registry

    metrics = make_wsgi_app(process_registry())

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            ok, detail = health() if health is not None else (True, "ok")
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [detail.encode() + b"\n"]
        if token and not _bearer_matches(environ, token):
            headers = [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="metrics"')]
            start_response("401 Unauthorized", headers)
            return [b"the metrics token is required: Authorization: Bearer $CAMPAIGNS_METRICS_TOKEN\n"]
        body: Iterable[bytes] = metrics(environ, start_response)
        return body

    return app


def serve_metrics(
    port: int,
    host: str = "127.0.0.1",
    health: Health | None = None,
    token: str | None = None,
) -> WSGIServer | None:
    """Serve the metrics port in a daemon thread (``token``: ``/metrics`` requires it). A port that cannot be
    bound is logged, not fatal."""
    try:
        app = metrics_app(health, token)
        server = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        log.error("metrics port unavailable", extra={"port": port, "error": str(exc)})
        return None
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics-server").start()
    log.info("metrics served", extra={"port": server.server_port, "multiprocess": bool(os.environ.get(
        "PROMETHEUS_MULTIPROC_DIR"))})  # fmt: skip
    return server


def mark_process_dead(pid: int) -> None:
    """Drop a finished prefork child's live gauges (its counters stay aggregated)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # untyped in the client
