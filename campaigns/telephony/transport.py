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
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import certifi
import httpx

from campaigns import metrics
from campaigns.settings import Settings, built_once
from campaigns.telephony.errors import (
    OutcomeUnknown,
    PermanentProviderError,
    ProviderError,
    ProviderHeld,
    TransientProviderError,
)
from campaigns.telephony.hints import signed_hint
from campaigns.telephony.protocol import DispatchRequest

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


RESEND_WINDOW_SECS = 45.0
"""How soon after the first request a repeat may go out to a provider that dedupes repeats: Telnyx ignores a
repeated Call Control ``command_id`` "within 60 seconds" (developers.telnyx.com/docs/voice/programmable-voice/
receiving-webhooks; command-retries recommends resending an identical command when no answer came). 15 s of
margin for clocks and the request's own time on the wire."""


class HttpAdapter:
    """An adapter that sends through an injected client, or else through its calling thread's shared client."""

    dedupes_repeats: bool = False
    """Whether the provider ignores a repeat of a request (same attempt id) sent within ``RESEND_WINDOW_SECS``:
    then an attempt whose outcome is unknown may be sent again instead of failed closed."""

    def __init__(self, settings: Settings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def lists_calls(self) -> bool:
        """Whether ``find_call`` can be asked (TeXML with an account SID, and messaging, can)."""
        return False

    def find_call(self, request: DispatchRequest, *, since: datetime, exclude: Collection[str]) -> str | None:
        raise NotImplementedError(f"{type(self).__name__} cannot list calls")

    @property
    def client(self) -> httpx.Client:
        return self._client if self._client is not None else shared_client(self.settings)


LIST_PAGE_SIZE = 50
"""Records asked for in one ``find_call`` list (the detail records search allows 1 to 50 a page)."""
CLOCK_SKEW = timedelta(seconds=5)
"""How far the provider's clock may be behind ours when it stamps a call's or a message's creation."""


def provider_instant(value: object) -> datetime | None:
    """A timestamp as a listing writes it (a TeXML call's ``date_created``, a message detail record's
    ``created_at``): ISO 8601, or RFC 2822 as in Twilio-style APIs; ``None`` when it is neither (such an entry is
    not taken for the attempt's)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def earliest_since(listed: Iterable[tuple[str, object]], *, since: datetime, exclude: Collection[str]) -> str | None:
    """The id of the earliest of ``listed`` (``(id, creation timestamp as the provider writes it)``, already
    narrowed to the attempt's numbers) created at or after ``since`` less ``CLOCK_SKEW``, whose id is not in
    ``exclude``; ``None`` when there is none."""
    created = sorted(
        (at, entry_id)
        for entry_id, stamp in listed
        if entry_id
        and entry_id not in exclude
        and (at := provider_instant(stamp)) is not None
        and at >= since - CLOCK_SKEW
    )
    return created[0][1] if created else None


def _first_error(response: httpx.Response) -> dict[str, Any]:
    """The first entry of Telnyx's error envelope (``{"errors": [{code, title, detail, source}]}``), or ``{}``."""
    try:
        first = response.json()["errors"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return {}
    return first if isinstance(first, dict) else {}


def _error_from_response(response: httpx.Response) -> tuple[str, str | None]:
    first = _first_error(response)
    if not first:
        return (response.text[:200] or response.reason_phrase, None)
    code = str(first.get("code")) if first.get("code") is not None else None
    parts = [p for p in (first.get("title"), first.get("detail")) if p]
    return (": ".join(str(p) for p in parts) or response.reason_phrase, code)


def post_json(
    client: httpx.Client,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    missing: str | None = None,
) -> dict[str, Any]:
    """POST and classify every failure into the typed errors (and count it by endpoint and result).

    ``missing`` names the account resource a 404 on this path can only be about (``connection`` for TeXML
    ``ai_calls/{connection_id}``, whose path holds nothing else): such a 404 holds the account.
    """
    endpoint = metrics.provider_endpoint_label(path)
    started = time.perf_counter()
    result = "outcome_unknown"
    try:
        parsed = _post_json(client, path, body, headers, missing)
        result = "success"
        return parsed
    except TransientProviderError as exc:
        result = "rate_limited" if exc.status_code == 429 else "server_error" if exc.status_code else "connect_error"
        raise
    except (PermanentProviderError, ProviderHeld):
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


ACCOUNT_REJECTED = {
    401: "provider rejected the API key (401)",
    403: "provider refused the API key access (403)",
}
"""401 "Authentication failed" (Telnyx code 10009: the key is invalid or missing) and 403 "Authorization failed"
(code 10010: the key may not do this) are about the key, never the recipient: developers.telnyx.com/development/
api-fundamentals/api-errors ("10009 Authentication failed", "10010 Authorization failed")."""

_NAMED_RESOURCES = (
    ("messaging_profile", ("messaging_profile", "messaging profile")),
    ("connection", ("connection", "application", "texml_app")),
)
"""What a 404/422 names when it is about the account's own configuration. Telnyx answers a missing or invalid
associated resource with 10005 "Resource not found", 10013 "Missing association" or 10017 "Associated resource
does not exist" (developers.telnyx.com/development/api-fundamentals/api-errors), with ``source.pointer`` naming
the field (``/connection_id``, ``/messaging_profile_id``); a recipient's error names ``/to`` instead."""

HELD_DETAIL = {
    "connection": "provider rejected the connection or TeXML application ({status})",
    "messaging_profile": "provider rejected the messaging profile ({status})",
}

_PROVIDER_BLOCK = "40300"
"""Messaging "Blocked due to STOP message": the recipient's opt-out, never the account's (see dispatch)."""


def account_hold(response: httpx.Response, missing: str | None = None) -> ProviderHeld | None:
    """The hold an error answer stands for, when it is about the account rather than this request."""
    status = response.status_code
    first = _first_error(response)
    message, code = _error_from_response(response)
    if code == _PROVIDER_BLOCK:
        return None
    words = f"{status}{f', code {code}' if code else ''}"
    if status in ACCOUNT_REJECTED:
        return ProviderHeld(
            f"provider rejected the account ({words}): {message}",
            reason="api_key",
            detail=ACCOUNT_REJECTED[status],
            status_code=status,
            code=code,
        )
    if status not in (404, 422):
        return None
    source: dict[str, Any] = first["source"] if isinstance(first.get("source"), dict) else {}
    named = " ".join(
        str(v) for v in (source.get("pointer"), source.get("parameter"), first.get("title"), first.get("detail")) if v
    ).lower()
    reason = next((r for r, tokens in _NAMED_RESOURCES if any(t in named for t in tokens)), None)
    if reason is None and status == 404 and "/to" not in named:
        reason = missing
    if reason is None:
        return None
    return ProviderHeld(
        f"provider rejected the account's {reason} ({words}): {message}",
        reason=reason,
        detail=HELD_DETAIL[reason].format(status=status),
        status_code=status,
        code=code,
    )


def get_json(client: httpx.Client, path: str, *, missing: str | None = None) -> dict[str, Any]:
    """GET (a probe: nothing is placed) with the same classification as :func:`post_json`."""
    try:
        response = client.get(path)
    except httpx.HTTPError as exc:
        raise TransientProviderError(f"could not reach the provider: {exc!r}") from exc
    return _classified(response, missing)


def _post_json(
    client: httpx.Client,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    missing: str | None = None,
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
    return _classified(response, missing)


def _classified(response: httpx.Response, missing: str | None) -> dict[str, Any]:
    """The JSON of a 2xx answer, or the typed error of any other."""
    if response.status_code == 429 or response.status_code in REFUSED_5XX:
        raise _answered(TransientProviderError, "provider refused", response)
    if response.status_code >= 500:
        # 500, 502, 504...: the request reached the provider (or a gateway in front of it), which may have placed
        # the call before failing. Re-sending could dial the person twice (TeXML has no idempotency key).
        raise _answered(OutcomeUnknown, "provider failed after receiving the request", response)
    if response.status_code >= 400:
        held = account_hold(response, missing)
        if held is not None:
            raise held
        raise _answered(PermanentProviderError, "provider rejected the request", response)
    try:
        parsed = response.json()
    except ValueError as exc:
        raise OutcomeUnknown("provider answered 2xx with a body that is not JSON") from exc
    if not isinstance(parsed, dict):
        raise OutcomeUnknown("provider answered 2xx with an unexpected body")
    return parsed


def callback_url(settings: Settings, path: str, attempt_id: uuid.UUID) -> str:
    """Webhook URL that names the attempt, MACed (``hints``), so callbacks match even before the provider id is
    stored and a query parameter cannot point a callback at another attempt."""
    hint = signed_hint(settings, attempt_id)
    return f"{settings.public_base_url.rstrip('/')}{path}?{urlencode({'attempt_id': hint})}"
