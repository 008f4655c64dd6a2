"""Prometheus metrics: every definition in one place (the database gauges: ``campaigns.metrics_database``).

Naming follows the Prometheus conventions (``campaigns_`` prefix, ``_total`` counters, ``_seconds`` units) and
every label has a small, fixed set of values: never an event id or a phone number. Label values that come from
outside (provider paths, webhook types, results) go through the ``*_label`` helpers, which map anything
unexpected to ``other``.

Celery prefork workers run in multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` must be set before
``prometheus_client`` is first imported (``worker.metrics_server.prepare_multiprocess`` does it), and the
process serving the metrics aggregates every child's files with ``MultiProcessCollector``.

Counters are incremented inside the unit of work that makes the change; a transaction that rolls back after
counting (rare: a lost connection) over-counts by one. The database gauges are exact.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from campaigns.states import (
    ANSWERED_BY,
    CALL_OUTCOMES,
    CHANNELS,
    RECORDED_CALL_STATUSES,
    RETRYABLE_CALL_STATUSES,
    TERMINAL_EVENT_STATUSES,
    Channel,
    Outcome,
)

log = logging.getLogger(__name__)
OUTCOME_VALUES = frozenset(o.value for o in Outcome)

DEFER_KINDS = ("window", "held", "pacing", "frequency_cap")
HOLD_REASONS = ("api_key", "connection", "messaging_profile")
"""``campaigns_provider_blocked{reason}``: as ``telephony.HOLD_REASONS`` (metrics imports no domain package)."""
SUPPRESS_KINDS = ("do_not_contact",)
IMPORT_RESULTS = ("accepted", "rejected", "duplicate", "suppressed")
PROVIDER_ENDPOINTS = ("texml_ai_calls", "calls", "messages")
PROVIDER_RESULTS = ("success", "rate_limited", "server_error", "client_error", "connect_error", "outcome_unknown")
WEBHOOK_ENDPOINTS = ("call_status", "telnyx")
WEBHOOK_VERIFICATIONS = ("valid", "invalid_signature", "no_public_key")
WEBHOOK_TYPES = (
    "texml.initiated",
    "texml.ringing",
    "texml.in-progress",
    "texml.completed",
    "texml.busy",
    "texml.no-answer",
    "texml.failed",
    "texml.canceled",
    "call.initiated",
    "call.answered",
    "call.hangup",
    "message.sent",
    "message.finalized",
    "message.received",
)
WEBHOOK_RESULTS = ("applied", "progress", "duplicate", "stale", "unmatched", "ignored")
RECONCILE_ACTIONS = (
    "withdrawn",
    "extended",
    "failed_unknown",
    "completed_sms",
    "resent",
    "found_placed",
    "looked_up",
    "awaiting_callback",
    "not_placed",
)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 200, 500, 1000)

# --- events ------------------------------------------------------------------------------------------------

EVENTS_CREATED = Counter(
    "campaigns_events_created_total", "Scheduled events created, by channel and source (api, import).",
    ["channel", "source"],
)  # fmt: skip
EVENTS_FINISHED = Counter(
    "campaigns_events_finished_total", "Events reaching a terminal status (completed, failed, canceled), by channel.",
    ["channel", "status"],
)  # fmt: skip
EVENTS_REOPENED = Counter(
    "campaigns_events_reopened_total",
    "Events taken back from a terminal status (failed closed, outcome unknown) because the true result arrived late;"
    " finished minus reopened is the net count by status.",
    ["channel", "status"],
)  # fmt: skip
CALL_ATTEMPTS = Counter(
    "campaigns_call_attempts_total", "Call attempts finished, by terminal call status (unknown = settled blind).",
    ["call_status"],
)  # fmt: skip
ATTEMPT_OUTCOMES = Counter(
    "campaigns_attempt_outcomes_total",
    "Attempts finished, by the engine's outcome and by who answered (answering-machine detection; none = not run).",
    ["channel", "outcome", "answered_by"],
)  # fmt: skip
RETRIES_SCHEDULED = Counter(
    "campaigns_retries_scheduled_total", "Call retries scheduled, by the call status that caused them.",
    ["call_status"],
)  # fmt: skip
DEFERRALS = Counter(
    "campaigns_deferrals_total", "Claimed events put back to pending without an attempt, by reason.", ["reason"]
)
SUPPRESSIONS = Counter(
    "campaigns_suppressions_total", "Claimed events failed without dispatch because they are suppressed, by reason.",
    ["reason"],
)  # fmt: skip
RECONCILED = Counter(
    "campaigns_reconciled_total", "Events with an expired lease settled by the reconciler, by action.", ["action"]
)

# --- provider and dispatch ---------------------------------------------------------------------------------

PROVIDER_REQUESTS = Counter(
    "campaigns_provider_requests_total", "Requests to the telephony provider, by endpoint and result.",
    ["endpoint", "result"],
)  # fmt: skip
PROVIDER_LATENCY = Histogram(
    "campaigns_provider_request_duration_seconds", "Provider request latency (real seconds), by endpoint.",
    ["endpoint"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
DISPATCH_LAG = Histogram(
    "campaigns_dispatch_lag_seconds",
    "Dispatch time minus due time, in app-clock seconds (real seconds unless CAMPAIGNS_TIME_WARP is set).",
    ["channel"], buckets=LAG_BUCKETS,
)  # fmt: skip

# --- webhooks ----------------------------------------------------------------------------------------------

WEBHOOKS_RECEIVED = Counter(
    "campaigns_webhooks_received_total", "Webhook requests received, by endpoint and signature verification result.",
    ["endpoint", "verification"],
)  # fmt: skip
WEBHOOKS_PROCESSED = Counter(
    "campaigns_webhooks_processed_total", "Verified webhooks processed, by type and what applying them did.",
    ["type", "result"],
)  # fmt: skip

# --- import ------------------------------------------------------------------------------------------------

IMPORT_ROWS = Counter("campaigns_import_rows_total", "CSV rows imported into campaigns, by result.", ["result"])

# --- scheduler ---------------------------------------------------------------------------------------------

CLAIM_BATCH_SIZE = Histogram(
    "campaigns_scheduler_claim_batch_size", "Attempts created per non-empty claim batch.", buckets=BATCH_BUCKETS
)
CLAIM_DURATION = Histogram(
    "campaigns_scheduler_claim_duration_seconds", "Time one claim transaction took (real seconds).",
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
SCHEDULER_HEARTBEAT = Gauge(
    "campaigns_scheduler_last_iteration_timestamp_seconds", "Unix time of the scheduler loop's last iteration.",
    multiprocess_mode="max",
)  # fmt: skip


def _initialise_label_sets() -> None:
    """Create every known series at zero, so ``rate()`` and alerts see them before the first event."""
    for channel in CHANNELS:
        for source in ("api", "import"):
            EVENTS_CREATED.labels(channel, source)
        for status in TERMINAL_EVENT_STATUSES:
            EVENTS_FINISHED.labels(channel, status)
            EVENTS_REOPENED.labels(channel, status)
        DISPATCH_LAG.labels(channel)
    for call_status in RECORDED_CALL_STATUSES:
        CALL_ATTEMPTS.labels(call_status)
    for outcome in CALL_OUTCOMES:
        ATTEMPT_OUTCOMES.labels(Channel.PHONE_CALL, outcome, "none")
    for call_status in RETRYABLE_CALL_STATUSES:
        RETRIES_SCHEDULED.labels(call_status)
    for kind in DEFER_KINDS:
        DEFERRALS.labels(kind)
    for kind in SUPPRESS_KINDS:
        SUPPRESSIONS.labels(kind)
    for action in RECONCILE_ACTIONS:
        RECONCILED.labels(action)
    for endpoint in PROVIDER_ENDPOINTS:
        PROVIDER_LATENCY.labels(endpoint)
        for result in PROVIDER_RESULTS:
            PROVIDER_REQUESTS.labels(endpoint, result)
    for webhook_endpoint in WEBHOOK_ENDPOINTS:
        for verification in WEBHOOK_VERIFICATIONS:
            WEBHOOKS_RECEIVED.labels(webhook_endpoint, verification)
    for result in IMPORT_RESULTS:
        IMPORT_ROWS.labels(result)


_initialise_label_sets()


# --- bounded label helpers ---------------------------------------------------------------------------------


def bounded(value: str | None, allowed: Collection[str]) -> str:
    """``value`` when it is one of ``allowed``, else ``other``."""
    return value if value is not None and value in allowed else "other"


def provider_endpoint_label(path: str) -> str:
    """``texml/ai_calls/<connection id>`` → ``texml_ai_calls``; ids never become labels."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["texml", "ai_calls"]:
        return "texml_ai_calls"
    return bounded(parts[0], PROVIDER_ENDPOINTS)


def webhook_result_label(result: str) -> str:
    """Collapse ``webhooks.record_and_apply`` results into a few values."""
    if result in ("duplicate", "unmatched", "ignored", "progress"):
        return result
    if result == "unknown attempt":
        return "unmatched"
    if result.startswith("stale") or result == "attempt already finished":
        return "stale"
    return "applied"


def count_webhook(kind: str, result: str) -> None:
    WEBHOOKS_PROCESSED.labels(bounded(kind, WEBHOOK_TYPES), webhook_result_label(result)).inc()


def count_outcome(channel: str, outcome: str, answered_by: str | None) -> None:
    """One finished attempt: its outcome and, where detection ran, who answered."""
    ATTEMPT_OUTCOMES.labels(
        bounded(channel, CHANNELS),
        bounded(outcome, OUTCOME_VALUES),
        "none" if answered_by is None else bounded(answered_by, ANSWERED_BY),
    ).inc()


def count_finished(channel: str, status: str) -> None:
    EVENTS_FINISHED.labels(bounded(channel, CHANNELS), bounded(status, TERMINAL_EVENT_STATUSES)).inc()


def count_reopened(channel: str, status: str) -> None:
    EVENTS_REOPENED.labels(bounded(channel, CHANNELS), bounded(status, TERMINAL_EVENT_STATUSES)).inc()


def count_import(accepted: int, rejected: int, duplicate: int, suppressed: int) -> None:
    for result, n in zip(IMPORT_RESULTS, (accepted, rejected, duplicate, suppressed), strict=True):
        if n:
            IMPORT_ROWS.labels(result).inc(n)


class _Forward(Collector):
    """Exposes another registry's metrics inside a new registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_registry() -> CollectorRegistry:
    """What this process exposes: the default registry, or every process's files in multiprocess mode."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in the client
    else:
        registry.register(_Forward(REGISTRY))
    return registry


def api_registry(database: Collector | None) -> CollectorRegistry:
    """The api's ``/metrics``: this process's metrics plus the database gauges
    (``metrics_database.DatabaseCollector``)."""
    registry = process_registry()
    if database is not None:
        registry.register(database)
    return registry
