"""Configuration from the environment (prefix ``CAMPAIGNS_``), read through one cached getter."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Generic, Literal, TypeVar

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the worker. Names are a public contract (DESIGN.md §4)."""

    model_config = SettingsConfigDict(env_prefix="CAMPAIGNS_", extra="ignore")

    database_url: str | None = None
    redis_url: str | None = None
    api_token: str | None = None
    telnyx_api_key: str | None = None
    telnyx_base_url: str = "https://api.telnyx.com/v2"
    telnyx_public_key: str | None = None
    telnyx_texml_app_id: str | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    time_warp: float = Field(default=1.0, gt=0)
    time_warp_origin: datetime | None = None
    time_start: datetime | None = None
    time_warp_origin_file: Path | None = None
    """Where the warp origin will be written (an ISO instant): until the file exists the warped clock holds at
    ``TIME_START``; it wins over ``TIME_WARP_ORIGIN``. The demo starts its clock this way once every component is
    ready."""
    default_ruleset: str = "none"
    callback_hint_secret: str | None = None
    """The MAC key of the attempt hint in callback URLs (``campaigns.telephony.hints``); unset: derived from
    ``TELNYX_API_KEY`` (else ``DATABASE_URL``). The API and the workers must agree on it."""
    rulesets_dir: Path | None = None
    """Extra ruleset TOML files; a file whose ``name`` matches a shipped ruleset replaces it (no release needed)."""

    # Extensions (not part of the Telnyx surface).
    call_provider: Literal["texml", "call_control"] = "texml"
    telnyx_connection_id: str | None = None
    """Call Control connection id, used when ``call_provider`` is ``call_control``."""
    telnyx_messaging_profile_id: str | None = None
    provider_timeout_secs: float = 10.0
    sending_lease_secs: float | None = Field(default=None, gt=0)
    """Real seconds an attempt may stay ``sending`` (committed, its request on the wire) before the reconciler takes
    it for the request of a dead worker (re-sent with the same ``command_id`` on Call Control, looked up in the
    TeXML call list, else failed closed). Unset: ``provider_timeout_secs`` + ``SENDING_MARGIN_SECS``. It must be
    longer than ``provider_timeout_secs``; see ``sending_lease``."""
    telnyx_account_sid: str | None = None
    """The Telnyx account SID of ``GET /texml/Accounts/{account_sid}/Calls``: with it, a TeXML attempt whose outcome
    is unknown is looked up in the account's call list before it fails closed; unset, it fails closed as before."""
    unknown_lookup_secs: float = Field(default=300.0, gt=0)
    """Real seconds after its request that a TeXML attempt with an unknown outcome keeps being looked up in the call
    list (Telnyx calls the list eventually consistent) before it fails closed."""
    redial_not_found: bool = True
    """An attempt with an unknown outcome that the provider's list never showed within ``unknown_lookup_secs``, and
    that no callback named, was not placed: recorded ``not_placed`` (no budget spent) and dialled again. ``False``:
    it fails closed instead, as when the list cannot be read."""
    claim_batch_size: int = 200
    dispatch_batch_size: int = Field(default=25, ge=1, le=1000)
    """Claimed attempts per dispatch task: sent concurrently by one worker, with two commits per task."""
    claim_lease_secs: float = 120.0
    """Real seconds a claimed event may wait for its worker before the reconciler looks at it."""
    call_lease_secs: float = 3600.0
    """Real seconds a dispatched call may run without a terminal callback before reconciliation."""
    callback_grace_secs: float = Field(default=600.0, ge=0)
    """Real seconds a call the provider reports over keeps waiting for its terminal status before it is closed as
    unknown: its callbacks may still be queued at the provider or in the engine's own webhook path (issue 21: a
    lease that expires while callbacks are queued is the engine being behind, not the call being lost)."""
    transient_backoff_secs: float = 15.0
    """App seconds an event waits after the provider refused it before it is tried again."""
    provider_backoff_secs: float = Field(default=1.0, gt=0)
    """Real seconds the whole provider waits after it refused a request for its rate (429, 503); doubled for each
    refusal that follows a wait, up to ``provider_backoff_max_secs``."""
    provider_backoff_max_secs: float = Field(default=60.0, gt=0)
    max_concurrent_calls: int | None = Field(default=None, ge=1)
    """Calls in progress at once across every event and campaign, cluster-wide (unset: no account-wide cap). Set
    it to the account's channel limit (Telnyx: 2 at sign-up, 10 after level 2 verification)."""
    max_dials_per_second: float = Field(default=30.0, gt=0)
    """Dials per second across the cluster, counted as Telnyx counts them: over a rolling 5 s window."""
    provider_probe_secs: float = Field(default=30.0, gt=0)
    """Real seconds between two probes of a provider whose account is held (a rejected API key, ...)."""
    scheduler_max_sleep_secs: float = 1.0
    scheduler_tick_secs: float = Field(default=0.025, ge=0, le=1)
    """Real seconds at least between two claims that each found less than a batch due: the events falling due
    meanwhile are claimed together (one transaction and one dispatch task for several, not one each)."""
    reconcile_interval_secs: float = 30.0
    webhook_tolerance_secs: int = 300
    log_json: bool = False
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Port for ``/metrics`` and ``/healthz`` of ``campaigns worker`` / ``scheduler`` (unset: no port)."""
    metrics_host: str = "127.0.0.1"
    """Interface of that port (``0.0.0.0`` in containers)."""
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1)
    """Bytes of an uploaded file (a call list, a do-not-contact file); its request is cut off past it."""
    api_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    """Bytes of any other request body of the operator API (``/v1``, ``/v2``): larger is a 413 (docs/security.md)."""
    api_header_timeout_secs: float = Field(default=10.0, gt=0)
    """Real seconds a client has to send a request's headers; the connection is closed past it."""
    api_keepalive_secs: int = Field(default=5, ge=1)
    """Real seconds an idle keep-alive connection stays open (uvicorn ``timeout_keep_alive``)."""
    api_max_connections: int = Field(default=1000, ge=1)
    """Connections and requests at once per api process (uvicorn ``limit_concurrency``); past it a 503."""
    demo_mode: bool = False
    """The demo stack (deploy/demo.env): the only configuration in which the api accepts the demo's published
    token and webhook key."""
    metrics_token: str | None = None
    """Bearer token ``/metrics`` requires when set (Prometheus: ``authorization: {credentials_file: …}``)."""
    inline_import_max_bytes: int = 1024 * 1024
    """Uploads up to this size are imported during the request; larger ones by a worker task."""
    webhook_receipt_retention_days: float = Field(default=30.0, gt=0)
    """App days a webhook's raw body (numbers, SMS text) is kept; beat erases older ones, keeping the row that
    recognizes a redelivery."""
    webhook_receipt_purge_secs: float = Field(default=3600.0, gt=0)
    """Real seconds between beat's purges of old webhook bodies."""
    recurring_dir: str | None = None
    """Directory of recurring definitions (``*.toml``), synced into the database on every tick."""
    recurring_min_interval_secs: float = Field(default=300.0, ge=0)
    """The shortest interval a recurring definition's schedule may have (its cron is refused below it, naming the
    interval) and the least time between two runs of one definition (a run sooner than that is skipped)."""
    recurring_tick_secs: float = 30.0
    """Real seconds between beat's checks for due recurring definitions."""

    @model_validator(mode="after")
    def _sending_outlasts_the_request(self) -> Settings:
        lease = self.sending_lease_secs
        if lease is not None and lease <= self.provider_timeout_secs:
            raise ValueError(
                f"CAMPAIGNS_SENDING_LEASE_SECS ({lease:g}) must be longer than CAMPAIGNS_PROVIDER_TIMEOUT_SECS "
                f"({self.provider_timeout_secs:g}): a request still waiting for its answer would be taken for a "
                "dead worker's"
            )
        return self


SENDING_MARGIN_SECS = 10.0
"""Added to ``provider_timeout_secs`` for the default ``sending_lease``: the connect (5 s) and the time a busy worker
takes to record the answer. A live request is then never taken for a dead worker's."""


def sending_lease(settings: Settings) -> float:
    """Real seconds an attempt stays ``sending`` before the reconciler acts on it (``sending_lease_secs``)."""
    lease = settings.sending_lease_secs
    return settings.provider_timeout_secs + SENDING_MARGIN_SECS if lease is None else lease


T = TypeVar("T")
_UNSET: object = object()


class BuiltOnce(Generic[T]):
    """A process-wide piece (settings, engine, runtime) built on first use, once, even when threads ask at once.

    ``lru_cache(maxsize=1)``, used before, lets every thread that misses build its own copy: threads asking
    together at start-up each built an engine (each with its own connection pool) and all but one were thrown
    away with their connections still open. Here the first thread builds while the others wait for it. A forked
    child gets a fresh lock, so a fork during a build cannot leave the child waiting for ever.
    """

    def __init__(self, build: Callable[[], T]) -> None:
        functools.update_wrapper(self, build)
        self._build = build
        self._value: object = _UNSET
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._after_fork)

    def __call__(self) -> T:
        value = self._value
        if value is _UNSET:
            with self._lock:
                value = self._value
                if value is _UNSET:
                    value = self._value = self._build()
        return value  # type: ignore[return-value]

    def cache_clear(self) -> None:
        """Forget the built value (tests change the environment between runs)."""
        with self._lock:
            self._value = _UNSET

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


def built_once(build: Callable[[], T]) -> BuiltOnce[T]:
    return BuiltOnce(build)


@built_once
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing the env."""
    return Settings()
