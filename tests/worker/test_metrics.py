"""Metrics of a whole simulated campaign, read from the three places Prometheus scrapes.

``campaigns simulator``, ``campaigns api``, ``campaigns scheduler --metrics-port`` and
``campaigns worker --pool prefork --metrics-port`` run as subprocesses on a clock warped 60x, so the worker's
metrics come from forked children through the multiprocess directory. A CSV campaign (one bad row, one number
on the do-not-contact list, one recipient outside the calling window) is imported over HTTP; the simulator
answers with 429, busy, no-answer, 422 and completed. Every metric the issue names must then be present with
values that agree with the database.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bench import harness
from campaigns import logs, metrics
from campaigns.metrics_database import DatabaseCollector
from campaigns.models import CallAttempt, ScheduledEvent
from campaigns.telephony.signatures import private_key_b64, public_key_b64
from tests.e2e.test_up import poll
from worker.embedded import free_port, wait_for_port

pytestmark = pytest.mark.e2e
TOKEN = "metrics-token"
NY = "+1212555"
# 12:00 in New York is 06:00 in Honolulu: the Hawaii row waits for its window (two app hours).
TIME_START = datetime(2026, 5, 7, 16, 0, tzinfo=UTC)
SCRIPT = {
    f"{NY}0101": ["http_429", "busy", "completed"],
    f"{NY}0102": ["no-answer", "no-answer"],
    f"{NY}0103": ["http_422"],
    f"{NY}0104": ["completed"],
}
CSV = (
    "phone,timezone,first_name\n"
    f"{NY}0101,America/New_York,Ana\n"
    f"{NY}0102,America/New_York,Ben\n"
    f"{NY}0103,America/New_York,Cy\n"
    f"{NY}0104,America/New_York,Di\n"
    f"{NY}0199,America/New_York,Suppressed\n"
    "+18085550105,Pacific/Honolulu,Hawaii\n"
    "not-a-number,America/New_York,Bad\n"
)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``; fails when there is none."""
    wanted = set(labels.items())
    found = [v for (n, lbls), v in samples.items() if n == name and wanted <= lbls]
    assert found, f"no sample {name}{labels or ''}"
    return sum(found)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


@pytest.fixture
def stack(database_url: str, tmp_path: Path, sessions: sessionmaker[Session]) -> Iterator[dict[str, Any]]:
    # A private redis-server: a worker left over on the shared one must not take this stack's tasks, nor this
    # worker another test's.
    with harness.redis_server() as private_redis:
        key = Ed25519PrivateKey.generate()
        sim_port, api_port, scheduler_port, worker_port = free_port(), free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGNS_", "PROMETHEUS_"))}
        env.update(
            {
                "CAMPAIGNS_SIMULATOR_PRIVATE_KEY": private_key_b64(key),
                "CAMPAIGNS_DATABASE_URL": database_url,
                "CAMPAIGNS_REDIS_URL": private_redis.url,
                "CAMPAIGNS_API_TOKEN": TOKEN,
                "CAMPAIGNS_TELNYX_API_KEY": "KEY_METRICS",
                "CAMPAIGNS_TELNYX_BASE_URL": f"http://127.0.0.1:{sim_port}/v2",
                "CAMPAIGNS_TELNYX_PUBLIC_KEY": public_key_b64(key),
                "CAMPAIGNS_TELNYX_TEXML_APP_ID": "texml-metrics",
                "CAMPAIGNS_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
                "CAMPAIGNS_TIME_WARP": "60",
                "CAMPAIGNS_TIME_START": TIME_START.isoformat(),
                "CAMPAIGNS_TIME_WARP_ORIGIN": datetime.now(UTC).isoformat(),
                "CAMPAIGNS_LOG_JSON": "true",
            }
        )
        multiproc = tmp_path / "multiproc"
        worker_env = {**env, "CAMPAIGNS_METRICS_PORT": str(worker_port), "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
        processes = [
            _spawn(["simulator", "--port", str(sim_port), "--ring-delay", "0.05", "--talk-delay", "0.1"], env,
                   tmp_path / "sim.log"),
            # Two API processes: webhooks and uploads land on either, /metrics must count both.
            _spawn(["api", "--port", str(api_port), "--workers", "2"], env, tmp_path / "api.log"),
            _spawn(["scheduler", "--metrics-port", str(scheduler_port)], env, tmp_path / "scheduler.log"),
            _spawn(["worker", "--pool", "prefork", "--concurrency", "2"], worker_env, tmp_path / "worker.log"),
        ]  # fmt: skip
        try:
            for port in (sim_port, api_port, scheduler_port, worker_port):
                wait_for_port(port, timeout=60)
            yield {
                "api": f"http://127.0.0.1:{api_port}",
                "sim": f"http://127.0.0.1:{sim_port}",
                "scheduler": f"http://127.0.0.1:{scheduler_port}",
                "worker": f"http://127.0.0.1:{worker_port}",
                "multiproc": multiproc,
                "logs": tmp_path,
                "sessions": sessions,
            }
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()


def test_a_simulated_campaign_shows_in_every_metric(stack: dict[str, Any]) -> None:
    api = httpx.Client(base_url=stack["api"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    sim = httpx.Client(base_url=stack["sim"], timeout=10)
    assert sim.post("/_simulator/script", json={"targets": SCRIPT, "default": "completed"}).status_code == 200
    added = api.post("/v1/suppressions", json={"phone_number": f"{NY}0199", "reason": "manual"})
    assert added.status_code == 201, added.text
    # An SMS created through the Telnyx API to the suppressed number: failed at claim time, never sent.
    app_now = datetime.fromisoformat(api.get("/healthz").json()["time"])
    sms = api.post(
        "/v2/ai/assistants/a1/scheduled_events",
        json={"telnyx_conversation_channel": "sms_chat", "telnyx_end_user_target": f"{NY}0199",
              "telnyx_agent_target": "+15553456789", "text": "hello",
              "scheduled_at_fixed_datetime": (app_now + timedelta(seconds=60)).isoformat()},
    )  # fmt: skip
    assert sms.status_code == 201, sms.text
    settings = {
        "name": "metrics", "assistant_id": "a1", "telnyx_agent_target": "+15553456789",
        "max_retries_client_errors": 1, "retry_interval_secs": 60, "default_region": "US", "ruleset": "us",
        "timezone": "America/New_York", "max_concurrent_calls": 2,
    }  # fmt: skip
    created = api.post(
        "/v1/campaigns",
        files={"file": ("list.csv", io.BytesIO(CSV.encode()), "text/csv")},
        data={"campaign": json.dumps(settings)},
    )
    assert created.status_code in (200, 201, 202), created.text
    campaign_id = created.json()["id"]
    # A webhook with a bad signature is refused and counted.
    forged = httpx.post(stack["api"] + "/webhooks/telnyx", content=b"{}", headers={"telnyx-signature-ed25519": "x"})
    assert forged.status_code == 401

    def settled() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/v1/campaigns/{campaign_id}").json()
        counts = body["counts"]
        return body if counts["in_progress"] == 0 and counts["pending"] <= 1 and counts["completed"] >= 2 else None

    try:
        campaign = poll(settled, timeout=60, interval=0.3)
        poll(lambda: value(scrape(stack["api"] + "/metrics"), "campaigns_events", status="in_progress") == 0,
             timeout=20, interval=0.5)  # fmt: skip
    except AssertionError:
        for name in ("api", "scheduler", "worker"):
            print(name, (stack["logs"] / f"{name}.log").read_text()[-3000:])
        raise

    counts = campaign["counts"]
    assert counts == {"pending": 1, "in_progress": 0, "completed": 2, "failed": 2, "canceled": 0}, counts
    assert campaign["import"]["rows_suppressed"] == 1  # the listed number never became an event
    sessions: sessionmaker[Session] = stack["sessions"]
    with sessions() as s:
        sent_attempts = s.scalar(
            select(func.count()).select_from(CallAttempt).where(CallAttempt.provider_id.is_not(None))
        )
        all_attempts = s.scalar(select(func.count()).select_from(CallAttempt))
        hawaii = s.scalars(select(ScheduledEvent).where(ScheduledEvent.telnyx_end_user_target == "+18085550105")).one()
    assert hawaii.status == "pending" and hawaii.deferred_reason and "calling window" in hawaii.deferred_reason

    a, w, sch = (
        scrape(stack["api"] + "/metrics"),
        scrape(stack["worker"] + "/metrics"),
        scrape(stack["scheduler"] + "/metrics"),
    )

    def total(name: str, **labels: str) -> float:
        """Summed over the three processes (each counts what happened in it)."""
        return sum(value(s, name, **labels) for s in (a, w, sch))

    # Events created and finished, by channel (the api imports and takes webhooks, the worker records rejections).
    assert value(a, "campaigns_events_created_total", channel="phone_call", source="import") == 5
    assert value(a, "campaigns_events_created_total", channel="sms_chat", source="api") == 1
    assert total("campaigns_events_finished_total", channel="phone_call", status="completed") == 2
    assert total("campaigns_events_finished_total", channel="phone_call", status="failed") == 2  # budget, 422
    # Claim-time decisions happen in the scheduler: the SMS to the listed number failed there, unsent.
    assert total("campaigns_events_finished_total", channel="sms_chat", status="failed") == 1
    assert value(sch, "campaigns_events_finished_total", channel="sms_chat", status="failed") == 1
    assert value(sch, "campaigns_suppressions_total", reason="do_not_contact") == 1
    assert value(sch, "campaigns_deferrals_total", reason="window") >= 1  # Hawaii
    assert value(sch, "campaigns_deferrals_total", reason="pacing") >= 1  # 4 due at once, 2 concurrent calls
    assert value(sch, "campaigns_deferrals_total", reason="held") == 0
    assert value(sch, "campaigns_scheduler_claim_batch_size_sum") == all_attempts + 1  # + the 429'd, withdrawn
    assert value(sch, "campaigns_scheduler_claim_duration_seconds_count") >= value(
        sch, "campaigns_scheduler_claim_batch_size_count"
    )
    heartbeat = value(sch, "campaigns_scheduler_last_iteration_timestamp_seconds")
    assert time.time() - 30 < heartbeat <= time.time() + 1

    # Call attempts by call status and retries (outcomes arrive as webhooks at the api).
    assert total("campaigns_call_attempts_total", call_status="completed") == 2
    assert total("campaigns_call_attempts_total", call_status="busy") == 1
    assert total("campaigns_call_attempts_total", call_status="no-answer") == 2
    assert total("campaigns_call_attempts_total", call_status="failed") == 1  # the 422, recorded by the worker
    assert value(a, "campaigns_retries_scheduled_total", call_status="busy") == 1
    assert value(a, "campaigns_retries_scheduled_total", call_status="no-answer") == 1

    # Provider requests, latency and dispatch lag come from the prefork children, through the directory.
    assert list(Path(stack["multiproc"]).glob("counter_*.db")), "the worker is not in multiprocess mode"
    assert value(w, "campaigns_provider_requests_total", endpoint="texml_ai_calls", result="success") == sent_attempts
    assert value(w, "campaigns_provider_requests_total", endpoint="texml_ai_calls", result="rate_limited") == 1
    assert value(w, "campaigns_provider_requests_total", endpoint="texml_ai_calls", result="client_error") == 1
    requests = value(w, "campaigns_provider_requests_total", endpoint="texml_ai_calls")
    assert value(w, "campaigns_provider_request_duration_seconds_count", endpoint="texml_ai_calls") == requests
    assert 0 < value(w, "campaigns_provider_request_duration_seconds_sum", endpoint="texml_ai_calls") < requests * 10
    assert value(w, "campaigns_dispatch_lag_seconds_count", channel="phone_call") == requests
    assert value(w, "campaigns_dispatch_lag_seconds_sum", channel="phone_call") >= 0

    # Webhooks by verification result and by type/result.
    assert value(a, "campaigns_webhooks_received_total", endpoint="telnyx", verification="invalid_signature") == 1
    assert value(a, "campaigns_webhooks_received_total", endpoint="call_status", verification="valid") >= sent_attempts
    assert value(a, "campaigns_webhooks_processed_total", type="texml.completed", result="applied") == 2
    assert value(a, "campaigns_webhooks_processed_total", type="texml.busy", result="applied") == 1
    assert value(a, "campaigns_webhooks_processed_total", result="progress") >= 1

    # Import rows by result.
    assert value(a, "campaigns_import_rows_total", result="accepted") == 5
    assert value(a, "campaigns_import_rows_total", result="rejected") == 1
    assert value(a, "campaigns_import_rows_total", result="suppressed") == 1

    # Database gauges.
    assert value(a, "campaigns_db_collector_up") == 1
    assert value(a, "campaigns_events", status="pending", channel="phone_call") == 1  # Hawaii
    assert value(a, "campaigns_events", status="in_progress") == 0
    assert value(a, "campaigns_due_events") == 0
    assert value(a, "campaigns_oldest_due_event_age_seconds") == 0
    assert value(a, "campaigns_expired_leases") == 0
    assert value(a, "campaigns_active_campaigns") == 1
    assert value(a, "campaigns_campaign_events", campaign_id=campaign_id, status="completed") == 2
    assert value(a, "campaigns_campaign_events", campaign_id=campaign_id, status="failed") == 2

    # Health of the metrics ports.
    assert httpx.get(stack["scheduler"] + "/healthz").status_code == 200
    assert httpx.get(stack["worker"] + "/healthz").status_code == 200

    # No label carries an event id, a phone number or a campaign's name (ids only: a name may hold personal data).
    for samples in (a, w, sch):
        for _, labels in samples:
            for label_name, label_value in labels:
                assert "+1" not in label_value, label_value
                assert label_name != "campaign" and label_value != "metrics", (label_name, label_value)
    # JSON log lines carry the event and campaign ids.
    lines = [json.loads(line) for line in (stack["logs"] / "scheduler.log").read_text().splitlines() if
             line.startswith("{")]  # fmt: skip
    deferred = [line for line in lines if line["message"] == "event deferred"]
    assert deferred and all(line.get("campaign_id") == campaign_id for line in deferred if "campaign_id" in line)
    assert any(line.get("campaign_id") == campaign_id and line.get("event_id") for line in deferred)


def test_due_backlog_and_expired_leases_are_read_from_the_database(sessions: sessionmaker[Session], clock: Any) -> None:
    from sqlalchemy import update

    from tests.factories import call_body, make_event, sms_body

    now = clock.now()
    with sessions.begin() as s:
        due_5m, due_1m, later, stuck = (
            make_event(s, now, call_body(now)).id,
            make_event(s, now, sms_body(now)).id,
            make_event(s, now, call_body(now)).id,
            make_event(s, now, call_body(now)).id,
        )
        for event_id, at in ((due_5m, now - timedelta(minutes=5)), (due_1m, now - timedelta(minutes=1)),
                             (later, now + timedelta(hours=1))):  # fmt: skip
            s.execute(
                update(ScheduledEvent).where(ScheduledEvent.id == event_id).values(scheduled_at_fixed_datetime=at)
            )
        s.execute(
            update(ScheduledEvent)
            .where(ScheduledEvent.id == stuck)
            .values(status="in_progress", lease_expires_at=now - timedelta(seconds=1))
        )
    collector = DatabaseCollector(sessions, clock.now, max_age=0)
    families = {f.name: f for f in collector.collect()}
    assert families["campaigns_db_collector_up"].samples[0].value == 1
    assert families["campaigns_due_events"].samples[0].value == 2
    assert families["campaigns_oldest_due_event_age_seconds"].samples[0].value == 300
    assert families["campaigns_expired_leases"].samples[0].value == 1
    live = {(s.labels["status"], s.labels["channel"]): s.value for s in families["campaigns_events"].samples}
    assert live == {
        ("pending", "phone_call"): 2, ("pending", "sms_chat"): 1,
        ("in_progress", "phone_call"): 1, ("in_progress", "sms_chat"): 0,
    }  # fmt: skip
    # Cached for max_age: a second scrape within it does not query again.
    cached = DatabaseCollector(sessions, clock.now, max_age=60)
    assert list(cached.collect()) is not None and cached.collect() is cached.collect()


def test_a_database_that_cannot_answer_reports_down_instead_of_failing_the_scrape() -> None:
    from sqlalchemy import create_engine

    broken = sessionmaker(bind=create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    collector = DatabaseCollector(broken, lambda: datetime.now(UTC), max_age=0)
    families = {f.name: f for f in collector.collect()}
    assert families["campaigns_db_collector_up"].samples[0].value == 0
    assert "campaigns_events" not in families


@pytest.mark.parametrize(
    ("path", "label"),
    [("texml/ai_calls/conn-123", "texml_ai_calls"), ("calls", "calls"), ("messages", "messages"),
     ("calls/abc/actions/hangup", "calls"), ("something/else", "other")],
)  # fmt: skip
def test_provider_paths_become_bounded_labels(path: str, label: str) -> None:
    assert metrics.provider_endpoint_label(path) == label


def test_webhook_types_and_results_are_bounded() -> None:
    assert metrics.bounded("texml.completed", metrics.WEBHOOK_TYPES) == "texml.completed"
    assert metrics.bounded("call.something-new", metrics.WEBHOOK_TYPES) == "other"
    assert metrics.webhook_result_label("stale: event has moved on") == "stale"
    assert metrics.webhook_result_label("unknown attempt") == "unmatched"
    assert metrics.webhook_result_label("no-answer") == "applied"


def test_bound_ids_reach_json_log_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger("tests.metrics.logs")
    logger.addHandler(handler)
    try:
        with logs.bind(attempt_id="att-1"):
            logs.add_context(event_id="ev-1", campaign_id="camp-1")
            logger.warning("provider refused", extra={"attempt_id": "explicit"})
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["attempt_id"] == "explicit" and inside["event_id"] == "ev-1" and inside["campaign_id"] == "camp-1"
    assert "event_id" not in outside
