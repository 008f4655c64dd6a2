"""Telephony providers. The only module that touches ``httpx``.

One ``Telephony`` protocol, three Telnyx adapters sharing one ``httpx.Client`` per thread:

- ``TelnyxTexml``: ``POST /texml/ai_calls/{connection_id}`` (default for calls). No idempotency key exists on
  this endpoint, so a request whose outcome is unknown must never be re-sent.
- ``TelnyxCallControl``: ``POST /calls`` with ``command_id`` = attempt id (Telnyx ignores a repeated dial).
- ``TelnyxMessaging``: ``POST /messages`` with ``Idempotency-Key`` = attempt id.

Errors are typed so the lifecycle can tell them apart:

- ``TransientProviderError``: refused before anything happened (connection refused, 429, 503): try again
  later, no retry budget consumed.
- ``PermanentProviderError``: the provider rejected the request (4xx): the event fails with the error.
- ``OutcomeUnknown``: the request may have reached the provider and been acted on (read timeout, connection
  dropped after sending, any other 5xx, an answer that cannot be read): never re-sent.
"""

from __future__ import annotations

import base64
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import certifi
import httpx

from campaigns import metrics
from campaigns.settings import Settings, built_once


class ProviderError(Exception):
    """Base of the typed provider errors."""

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class TransientProviderError(ProviderError):
    """Nothing was placed; the same request may be made again later."""


class PermanentProviderError(ProviderError):
    """The provider refused this request for good."""


class OutcomeUnknown(ProviderError):
    """The request may have been acted on; it must not be re-sent."""


@dataclass(frozen=True)
class DispatchRequest:
    """What the engine asks a provider to do for one attempt."""

    attempt_id: uuid.UUID
    channel: str
    assistant_id: str
    to: str
    from_: str
    dynamic_variables: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    connection_id: str | None = None
    sip_region: str | None = None


@dataclass(frozen=True)
class DispatchResult:
    """The provider accepted the request; ``provider_id`` is the call id or message id."""

    provider: str
    provider_id: str
    status: str | None = None


class Telephony(Protocol):
    """A way to place a call or send a message."""

    name: str

    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        """Send the request once. Raises one of the typed ``ProviderError`` subclasses on failure."""
        ...

    def call_is_alive(self, provider_id: str) -> bool | None:
        """Whether a dispatched call is still up; ``None`` when the provider cannot tell."""
        ...


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
    import os

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


class _HttpProvider:
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
        message, code = _error_from_response(response)
        raise TransientProviderError(
            f"provider refused ({response.status_code}{f', code {code}' if code else ''}): {message}",
            status_code=response.status_code,
            code=code,
        )
    if response.status_code >= 500:
        # 500, 502, 504...: the request reached the provider (or a gateway in front of it), which may have placed
        # the call before failing. Re-sending could dial the person twice (TeXML has no idempotency key).
        message, code = _error_from_response(response)
        raise OutcomeUnknown(
            f"provider failed after receiving the request ({response.status_code}"
            f"{f', code {code}' if code else ''}): {message}",
            status_code=response.status_code,
            code=code,
        )
    if response.status_code >= 400:
        message, code = _error_from_response(response)
        raise PermanentProviderError(
            f"provider rejected the request ({response.status_code}{f', code {code}' if code else ''}): {message}",
            status_code=response.status_code,
            code=code,
        )
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


class TelnyxTexml(_HttpProvider):
    """Outbound AI-assistant calls through TeXML ``ai_calls``."""

    name = "texml"

    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        connection_id = request.connection_id or self.settings.telnyx_texml_app_id
        if not connection_id:
            raise PermanentProviderError("no TeXML connection id: set CAMPAIGNS_TELNYX_TEXML_APP_ID")
        body: dict[str, Any] = {
            "From": request.from_,
            "To": request.to,
            "AIAssistantId": request.assistant_id,
            "StatusCallback": callback_url(self.settings, "/webhooks/telnyx/call-status", request.attempt_id),
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": "initiated ringing answered completed no-answer busy canceled failed",
        }
        if request.dynamic_variables:
            body["AIAssistantDynamicVariables"] = dict(request.dynamic_variables)
        if request.sip_region:
            body["SipRegion"] = request.sip_region
        data = post_json(self.client, f"texml/ai_calls/{connection_id}", body)
        call_sid = data.get("call_sid")
        if not isinstance(call_sid, str) or not call_sid:
            raise OutcomeUnknown("TeXML answered without a call_sid")
        return DispatchResult(provider=self.name, provider_id=call_sid, status=str(data.get("status") or "queued"))

    def call_is_alive(self, provider_id: str) -> bool | None:
        return call_control_is_alive(self.client, provider_id)


def call_control_is_alive(client: httpx.Client, call_control_id: str) -> bool | None:
    """``GET /calls/{id}``: ``is_alive``, or ``None`` when the provider cannot say."""
    try:
        response = client.get(f"calls/{call_control_id}")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        alive = response.json()["data"]["is_alive"]
    except (ValueError, KeyError, TypeError):
        return None
    return bool(alive)


class TelnyxCallControl(_HttpProvider):
    """Calls dialled through Call Control with ``command_id`` = attempt id (at-most-once dialing)."""

    name = "call_control"

    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        connection_id = request.connection_id or self.settings.telnyx_connection_id
        if not connection_id:
            raise PermanentProviderError("no Call Control connection id: set CAMPAIGNS_TELNYX_CONNECTION_ID")
        body: dict[str, Any] = {
            "connection_id": connection_id,
            "from": request.from_,
            "to": request.to,
            "command_id": str(request.attempt_id),
            "webhook_url": callback_url(self.settings, "/webhooks/telnyx", request.attempt_id),
            "client_state": base64.b64encode(str(request.attempt_id).encode()).decode(),
            "timeout_secs": 30,
            "assistant": {"id": request.assistant_id, "dynamic_variables": dict(request.dynamic_variables)},
        }
        data = post_json(self.client, "calls", body).get("data") or {}
        call_control_id = data.get("call_control_id") if isinstance(data, dict) else None
        if not isinstance(call_control_id, str) or not call_control_id:
            raise OutcomeUnknown("Call Control answered without a call_control_id")
        return DispatchResult(provider=self.name, provider_id=call_control_id, status="queued")

    def call_is_alive(self, provider_id: str) -> bool | None:
        return call_control_is_alive(self.client, provider_id)


class TelnyxMessaging(_HttpProvider):
    """SMS through ``POST /messages`` with ``Idempotency-Key`` = attempt id."""

    name = "messaging"

    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        body: dict[str, Any] = {
            "from": request.from_,
            "to": request.to,
            "text": request.text or "",
            "webhook_url": callback_url(self.settings, "/webhooks/telnyx", request.attempt_id),
        }
        if self.settings.telnyx_messaging_profile_id:
            body["messaging_profile_id"] = self.settings.telnyx_messaging_profile_id
        data = post_json(self.client, "messages", body, headers={"Idempotency-Key": str(request.attempt_id)})
        message = data.get("data") or {}
        message_id = message.get("id") if isinstance(message, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise OutcomeUnknown("messaging answered without a message id")
        return DispatchResult(provider=self.name, provider_id=message_id, status="queued")

    def call_is_alive(self, provider_id: str) -> bool | None:
        return None


@dataclass
class Providers:
    """The provider used for each channel."""

    calls: Telephony
    sms: Telephony

    def for_channel(self, channel: str) -> Telephony:
        return self.sms if channel == "sms_chat" else self.calls

    def by_name(self, name: str) -> Telephony:
        for candidate in (self.calls, self.sms):
            if candidate.name == name:
                return candidate
        return self.calls


def providers_from_settings(settings: Settings, client: httpx.Client | None = None) -> Providers:
    calls: Telephony = (
        TelnyxCallControl(settings, client)
        if settings.call_provider == "call_control"
        else TelnyxTexml(settings, client)
    )
    return Providers(calls=calls, sms=TelnyxMessaging(settings, client))
