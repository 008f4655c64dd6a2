"""What every Telnyx adapter shares: one ``httpx.Client`` per thread, one TLS context, the request pools, and
the POST that classifies every failure into the typed errors (``campaigns.telephony.errors``).

The adapters build the bodies and read the answers; nothing outside this package touches ``httpx``.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlencode

import certifi
import httpx

from campaigns import metrics
from campaigns.settings import Settings, built_once
from campaigns.telephony.errors import OutcomeUnknown, PermanentProviderError, ProviderError, TransientProviderError

E = TypeVar("E", bound=ProviderError)

_local = threading.local()


@built_once
def tls_context() -> ssl.SSLContext:
    """One TLS context (the CA bundle loaded once) for every thread's client: building one per client cost
    ~25 ms of CPU, paid by each of the 64 sending threads on its first request (a dispatch lag spike at start)."""
    return ssl.create_default_context(cafile=certifi.where())


_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def request_pool(name: str, size: int) -> ThreadPoolExecutor:
    """The process's pool of ``size`` threads named ``name`` for concurrent provider requests.

    Created on first use, so forked children get their own; its threads live on, each with its own client and
    kept-alive connections (:func:`shared_client`).
    """
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None:
            pool = _pools[name] = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)
        return pool


def warm_up() -> None:
    """Load what every first provider request would otherwise load (worker start-up calls it)."""
    tls_context()


def shared_client(settings: Settings) -> httpx.Client:
    """The calling thread's ``httpx.Client`` for these settings (created lazily; forked children get their own).

    One client per thread, each keeping its own few connections alive: the dispatch pool sends from up to 64
    threads at once, and one client shared by all of them spent half of a worker's CPU in httpcore's connection
    assignment (a scan over every pooled connection for every waiting request, under one lock; issue 7 profile).
    """
    key = (settings.telnyx_base_url, settings.provider_timeout_secs, os.getpid())
    clients: dict[tuple[str, float, int], httpx.Client] | None = getattr(_local, "clients", None)
    if clients is None:
        clients = _local.clients = {}
    client = clients.get(key)
    if client is None:
        client = clients[key] = httpx.Client(
            base_url=settings.telnyx_base_url.rstrip("/") + "/",
            verify=tls_context(),
            timeout=httpx.Timeout(settings.provider_timeout_secs, connect=5.0),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
            headers={
                "Authorization": f"Bearer {settings.telnyx_api_key or ''}",
                "Accept": "application/json",
            },
        )
    return client


class HttpAdapter:
    """An adapter that sends through an injected client, or else through its calling thread's shared client."""

    def __init__(self, settings: Settings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> httpx.Client:
        return self._client if self._client is not None else shared_client(self.settings)


def _error_from_response(response: httpx.Response) -> tuple[str, str | None]:
    try:
        body = response.json()
        first = body["errors"][0]
        code = str(first.get("code")) if first.get("code") is not None else None
        parts = [p for p in (first.get("title"), first.get("detail")) if p]
        return (": ".join(str(p) for p in parts) or response.reason_phrase, code)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return (response.text[:200] or response.reason_phrase, None)


def post_json(
    client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """POST and classify every failure into the typed errors (and count it by endpoint and result)."""
    endpoint = metrics.provider_endpoint_label(path)
    started = time.perf_counter()
    result = "outcome_unknown"
    try:
        parsed = _post_json(client, path, body, headers)
        result = "success"
        return parsed
    except TransientProviderError as exc:
        result = "rate_limited" if exc.status_code == 429 else "server_error" if exc.status_code else "connect_error"
        raise
    except PermanentProviderError:
        result = "client_error"
        raise
    except OutcomeUnknown as exc:
        result = "server_error" if exc.status_code else "outcome_unknown"
        raise
    finally:
        metrics.PROVIDER_REQUESTS.labels(endpoint, result).inc()
        metrics.PROVIDER_LATENCY.labels(endpoint).observe(time.perf_counter() - started)


REFUSED_5XX = frozenset({503})
"""Server errors that mean "not accepted, come back later" (503 Service Unavailable, load shedding before the
request is processed): tried again later like a 429. Every other 5xx is an unknown outcome."""


def _answered(error: type[E], what: str, response: httpx.Response) -> E:
    """``error`` for an HTTP error answer: ``what``, the status, and Telnyx's error code and words."""
    message, code = _error_from_response(response)
    status = response.status_code
    return error(f"{what} ({status}{f', code {code}' if code else ''}): {message}", status_code=status, code=code)


def _post_json(
    client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    try:
        response = client.post(path, json=body, headers=headers)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise TransientProviderError(f"could not connect to the provider: {exc!r}") from exc
    except httpx.TransportError as exc:
        # Read/write timeouts, resets after sending: the provider may have acted on it.
        raise OutcomeUnknown(f"no answer from the provider after sending: {exc!r}") from exc
    except httpx.HTTPError as exc:
        # Sent, but the answer could not be read (a body that fails to decode, ...): it may have been acted on.
        raise OutcomeUnknown(f"the provider's answer could not be read: {exc!r}") from exc
    if response.status_code == 429 or response.status_code in REFUSED_5XX:
        raise _answered(TransientProviderError, "provider refused", response)
    if response.status_code >= 500:
        # 500, 502, 504...: the request reached the provider (or a gateway in front of it), which may have placed
        # the call before failing. Re-sending could dial the person twice (TeXML has no idempotency key).
        raise _answered(OutcomeUnknown, "provider failed after receiving the request", response)
    if response.status_code >= 400:
        raise _answered(PermanentProviderError, "provider rejected the request", response)
    try:
        parsed = response.json()
    except ValueError as exc:
        raise OutcomeUnknown("provider answered 2xx with a body that is not JSON") from exc
    if not isinstance(parsed, dict):
        raise OutcomeUnknown("provider answered 2xx with an unexpected body")
    return parsed


def callback_url(settings: Settings, path: str, attempt_id: uuid.UUID) -> str:
    """Webhook URL that names the attempt, so callbacks match even before the provider id is stored."""
    return f"{settings.public_base_url.rstrip('/')}{path}?{urlencode({'attempt_id': str(attempt_id)})}"
