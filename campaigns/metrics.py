"""Prometheus metrics: every definition in one place, plus a collector that reads PostgreSQL at scrape time.

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
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from campaigns.states import (
    ANSWERED_BY,
    CALL_OUTCOMES,
    CHANNELS,
    RECORDED_CALL_STATUSES,
    RETRYABLE_CALL_STATUSES,
    TERMINAL_EVENT_STATUSES,
    CallStatus,
    CampaignStatus,
    Channel,
    EventStatus,
    ImportStatus,
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
RECONCILE_ACTIONS = ("withdrawn", "extended", "failed_unknown", "completed_sms", "resent", "found_placed", "looked_up")

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


# --- database gauges ---------------------------------------------------------------------------------------

_PENDING, _IN_PROGRESS = EventStatus.PENDING, EventStatus.IN_PROGRESS
_PAUSED, _CANCELED, _ACTIVE = CampaignStatus.PAUSED, CampaignStatus.CANCELED, CampaignStatus.ACTIVE
_COMPLETED = CampaignStatus.COMPLETED
_IMPORT_DONE = (ImportStatus.COMPLETED.value, ImportStatus.FAILED.value)

LIVE_SQL = text(
    f"""
    SELECT '{_PENDING}' AS status, e.telnyx_conversation_channel AS channel, count(*) AS n,
           count(*) FILTER (WHERE e.scheduled_at_fixed_datetime <= :now AND c.status IS DISTINCT FROM '{_PAUSED}'
                            AND c.status IS DISTINCT FROM '{_CANCELED}') AS due,
           min(e.scheduled_at_fixed_datetime) FILTER (
               WHERE e.scheduled_at_fixed_datetime <= :now AND c.status IS DISTINCT FROM '{_PAUSED}'
                     AND c.status IS DISTINCT FROM '{_CANCELED}') AS oldest_due,
           0 AS expired
    FROM scheduled_events e LEFT JOIN campaigns c ON c.id = e.campaign_id
    WHERE e.status = '{_PENDING}'
    GROUP BY e.telnyx_conversation_channel
    UNION ALL
    SELECT '{_IN_PROGRESS}', telnyx_conversation_channel, count(*), 0, NULL,
           count(*) FILTER (WHERE lease_expires_at < :now)
    FROM scheduled_events
    WHERE status = '{_IN_PROGRESS}'
    GROUP BY telnyx_conversation_channel
    """
)
"""Live events only: each half is served by its partial index (pending by due time, in_progress by lease), which
is why the statuses are written in as literals, not parameters."""

_SHOWN_CAMPAIGNS = f"""
    SELECT id, name FROM campaigns WHERE status IN ('{_ACTIVE}', '{_COMPLETED}') ORDER BY created_at DESC LIMIT :limit
"""
CAMPAIGNS_SQL = text(
    f"""
    WITH shown AS ({_SHOWN_CAMPAIGNS})
    SELECT s.id, s.name, e.status, count(e.id) AS n
    FROM shown s LEFT JOIN scheduled_events e ON e.campaign_id = s.id
    GROUP BY s.id, s.name, e.status
    """
)
"""Per-campaign progress for the newest active or completed campaigns (``ix_scheduled_events_campaign_status``):
a finished campaign keeps its final numbers on the dashboard."""

CAMPAIGN_ATTEMPTS_SQL = text(
    f"""
    WITH shown AS ({_SHOWN_CAMPAIGNS})
    SELECT s.id, s.name,
           coalesce(a.outcome, CASE a.call_status WHEN '{CallStatus.COMPLETED}' THEN '{Outcome.ANSWERED}'
                                                   ELSE a.call_status END) AS outcome,
           count(*) AS n
    FROM shown s JOIN scheduled_events e ON e.campaign_id = s.id JOIN call_attempts a ON a.event_id = e.id
    WHERE a.call_status IS NOT NULL
    GROUP BY 1, 2, 3
    """
)
"""Finished attempts of the same campaigns by outcome (an attempt recorded before outcomes existed: its call
status, ``completed`` read as ``answered``): the dashboard's connect rate and outcomes per campaign."""

LIVE_CAMPAIGNS_SQL = text(
    f"""
    SELECT count(*) FROM campaigns c
    WHERE c.status = '{_ACTIVE}'
      AND (c.import_status NOT IN {_IMPORT_DONE!r}
           OR EXISTS (SELECT 1 FROM scheduled_events e
                      WHERE e.campaign_id = c.id AND e.status IN ('{_PENDING}', '{_IN_PROGRESS}')))
    """
)
"""Campaigns still running: active, and importing or with an event not yet terminal. One that finished is marked
``completed`` by the reconcile beat (``campaign.complete_finished_campaigns``); until then it is not counted."""


@dataclass
class DatabaseSnapshot:
    live: dict[tuple[str, str], int] = field(default_factory=dict)
    due: int = 0
    oldest_due: datetime | None = None
    expired_leases: int = 0
    active_campaigns: int = 0
    campaign_events: dict[tuple[str, str, str], int] = field(default_factory=dict)
    campaign_attempts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    held_reasons: set[str] = field(default_factory=set)


def read_database(session: Session, *, now: datetime, campaign_limit: int) -> DatabaseSnapshot:
    """The few aggregate queries behind the database gauges."""
    snap = DatabaseSnapshot()
    for status, channel, n, due, oldest, expired in session.execute(LIVE_SQL, {"now": now}):
        snap.live[(status, channel)] = int(n)
        snap.due += int(due)
        snap.expired_leases += int(expired)
        if oldest is not None and (snap.oldest_due is None or oldest < snap.oldest_due):
            snap.oldest_due = oldest
    snap.active_campaigns = int(session.execute(LIVE_CAMPAIGNS_SQL).scalar_one())
    for campaign_id, name, status, n in session.execute(CAMPAIGNS_SQL, {"limit": campaign_limit}):
        if status is not None:
            snap.campaign_events[(str(campaign_id), str(name)[:64], str(status))] = int(n)
    for campaign_id, name, outcome, n in session.execute(CAMPAIGN_ATTEMPTS_SQL, {"limit": campaign_limit}):
        key = (str(campaign_id), str(name)[:64], bounded(outcome, OUTCOME_VALUES))
        snap.campaign_attempts[key] = snap.campaign_attempts.get(key, 0) + int(n)
    snap.held_reasons = {str(reason) for (reason,) in session.execute(text("SELECT reason FROM provider_holds"))}
    return snap


class DatabaseCollector(Collector):
    """Gauges describing the database, read at scrape time (cached ``max_age`` seconds, bounded by a timeout).

    Register it in one process only (the api): every worker reading the same database would multiply the cost.
    A failed read exports ``campaigns_db_collector_up 0`` instead of failing the scrape.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        now: Callable[[], datetime],
        *,
        max_age: float = 5.0,
        timeout_ms: int = 2000,
        campaign_limit: int = 50,
    ) -> None:
        self.sessions = sessions
        self.now = now
        self.max_age = max_age
        self.timeout_ms = timeout_ms
        self.campaign_limit = campaign_limit
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> Iterable[Metric]:
        # Nothing: describing would query the database at registration time.
        return []

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.max_age:
                return self._cached[1]
            metrics = self._read()
            self._cached = (time.monotonic(), metrics)
            return metrics

    def _read(self) -> list[Metric]:
        started = time.perf_counter()
        now = self.now()
        up = GaugeMetricFamily("campaigns_db_collector_up", "1 when the last database read for the gauges worked.")
        duration = GaugeMetricFamily(
            "campaigns_db_collector_duration_seconds", "How long the database read for the gauges took."
        )
        try:
            with self.sessions() as session:
                session.execute(text("SET TRANSACTION READ ONLY"))
                session.execute(text(f"SET LOCAL statement_timeout = {int(self.timeout_ms)}"))
                snap = read_database(session, now=now, campaign_limit=self.campaign_limit)
                session.rollback()
        except Exception as exc:
            log.warning("database gauges unavailable", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
            up.add_metric([], 0)
            duration.add_metric([], time.perf_counter() - started)
            return [up, duration]
        events = GaugeMetricFamily(
            "campaigns_events", "Events not yet finished, by status (pending, in_progress) and channel.",
            labels=["status", "channel"],
        )  # fmt: skip
        for live in (_PENDING, _IN_PROGRESS):
            for channel in CHANNELS:
                events.add_metric([live, channel], snap.live.get((live, channel), 0))
        due = GaugeMetricFamily(
            "campaigns_due_events", "Pending events already due (excluding paused and canceled campaigns)."
        )
        due.add_metric([], snap.due)
        oldest = GaugeMetricFamily(
            "campaigns_oldest_due_event_age_seconds",
            "How long the oldest due pending event has been waiting (app-clock seconds; 0 when none).",
        )
        oldest.add_metric([], max(0.0, (now - snap.oldest_due).total_seconds()) if snap.oldest_due else 0.0)
        expired = GaugeMetricFamily(
            "campaigns_expired_leases", "In-progress events whose lease has expired (waiting for the reconciler)."
        )
        expired.add_metric([], snap.expired_leases)
        active = GaugeMetricFamily(
            "campaigns_active_campaigns",
            "Campaigns still running: active, and importing or with events not yet finished (not paused, canceled "
            "or completed).",
        )
        active.add_metric([], snap.active_campaigns)
        progress = GaugeMetricFamily(
            "campaigns_campaign_events",
            f"Events of the {self.campaign_limit} newest active or completed campaigns, by status.",
            labels=["campaign_id", "campaign", "status"],
        )
        for (campaign_id, name, status), n in sorted(snap.campaign_events.items()):
            progress.add_metric([campaign_id, name, status], n)
        attempts = GaugeMetricFamily(
            "campaigns_campaign_attempts",
            f"Finished attempts of the {self.campaign_limit} newest active or completed campaigns, by outcome.",
            labels=["campaign_id", "campaign", "outcome"],
        )
        for (campaign_id, name, outcome), n in sorted(snap.campaign_attempts.items()):
            attempts.add_metric([campaign_id, name, outcome], n)
        blocked = GaugeMetricFamily(
            "campaigns_provider_blocked",
            "1 while the provider refuses the account for this reason (api_key, connection, messaging_profile): "
            "dispatch through it is held.",
            labels=["reason"],
        )
        for reason in HOLD_REASONS:
            blocked.add_metric([reason], 1 if reason in snap.held_reasons else 0)
        up.add_metric([], 1)
        duration.add_metric([], time.perf_counter() - started)
        return [events, due, oldest, expired, active, progress, attempts, blocked, up, duration]


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


def api_registry(database: DatabaseCollector | None) -> CollectorRegistry:
    """The api's ``/metrics``: this process's metrics plus the database gauges."""
    registry = process_registry()
    if database is not None:
        registry.register(database)
    return registry
