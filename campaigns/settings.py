"""Configuration from the environment (prefix ``CAMPAIGNS_``), read through one cached getter."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Generic, Literal, TypeVar

from pydantic import Field
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
    claim_batch_size: int = 200
    dispatch_batch_size: int = Field(default=25, ge=1, le=1000)
    """Claimed attempts per dispatch task: sent concurrently by one worker, with two commits per task."""
    claim_lease_secs: float = 120.0
    """Real seconds a claimed event may wait for its worker before the reconciler looks at it."""
    call_lease_secs: float = 3600.0
    """Real seconds a dispatched call may run without a terminal callback before reconciliation."""
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
    max_upload_bytes: int = 2 * 1024**3
    inline_import_max_bytes: int = 1024 * 1024
    """Uploads up to this size are imported during the request; larger ones by a worker task."""
    recurring_dir: str | None = None
    """Directory of recurring definitions (``*.toml``), synced into the database on every tick."""
    recurring_min_interval_secs: float = Field(default=300.0, ge=0)
    """The shortest interval a recurring definition's schedule may have (its cron is refused below it, naming the
    interval) and the least time between two runs of one definition (a run sooner than that is skipped)."""
    recurring_tick_secs: float = 30.0
    """Real seconds between beat's checks for due recurring definitions."""


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
