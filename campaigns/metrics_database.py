"""The database gauges of ``/metrics``: a collector that reads PostgreSQL at scrape time (events by status, due
and oldest, expired leases, active campaigns and their progress, attempts by outcome, provider holds).

Register it in one process only (the api, ``metrics.api_registry``); the counters and histograms live in
``campaigns.metrics``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from campaigns.metrics import HOLD_REASONS, OUTCOME_VALUES, bounded
from campaigns.states import CHANNELS, CallStatus, CampaignStatus, EventStatus, ImportStatus, Outcome

log = logging.getLogger(__name__)


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
    SELECT id FROM campaigns WHERE status IN ('{_ACTIVE}', '{_COMPLETED}') ORDER BY created_at DESC LIMIT :limit
"""
CAMPAIGNS_SQL = text(
    f"""
    WITH shown AS ({_SHOWN_CAMPAIGNS})
    SELECT s.id, e.status, count(e.id) AS n
    FROM shown s LEFT JOIN scheduled_events e ON e.campaign_id = s.id
    GROUP BY s.id, e.status
    """
)
"""Per-campaign progress for the newest active or completed campaigns (``ix_scheduled_events_campaign_status``):
a finished campaign keeps its final numbers on the dashboard."""

CAMPAIGN_ATTEMPTS_SQL = text(
    f"""
    WITH shown AS ({_SHOWN_CAMPAIGNS})
    SELECT s.id,
           coalesce(a.outcome, CASE a.call_status WHEN '{CallStatus.COMPLETED}' THEN '{Outcome.ANSWERED}'
                                                   ELSE a.call_status END) AS outcome,
           count(*) AS n
    FROM shown s JOIN scheduled_events e ON e.campaign_id = s.id JOIN call_attempts a ON a.event_id = e.id
    WHERE a.call_status IS NOT NULL
    GROUP BY 1, 2
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
    campaign_events: dict[tuple[str, str], int] = field(default_factory=dict)
    campaign_attempts: dict[tuple[str, str], int] = field(default_factory=dict)
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
    for campaign_id, status, n in session.execute(CAMPAIGNS_SQL, {"limit": campaign_limit}):
        if status is not None:
            snap.campaign_events[(str(campaign_id), str(status))] = int(n)
    for campaign_id, outcome, n in session.execute(CAMPAIGN_ATTEMPTS_SQL, {"limit": campaign_limit}):
        key = (str(campaign_id), bounded(outcome, OUTCOME_VALUES))
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
            labels=["campaign_id", "status"],  # ids, not names: a name may hold personal data (issue 19 item 13)
        )
        for (campaign_id, status), n in sorted(snap.campaign_events.items()):
            progress.add_metric([campaign_id, status], n)
        attempts = GaugeMetricFamily(
            "campaigns_campaign_attempts",
            f"Finished attempts of the {self.campaign_limit} newest active or completed campaigns, by outcome.",
            labels=["campaign_id", "outcome"],
        )
        for (campaign_id, outcome), n in sorted(snap.campaign_attempts.items()):
            attempts.add_metric([campaign_id, outcome], n)
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
