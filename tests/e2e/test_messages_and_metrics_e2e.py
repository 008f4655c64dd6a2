"""End to end through ``campaigns simulator`` + ``campaigns up``: an ``expired`` SMS fails, a
``delivery_unconfirmed`` one completes with its outcome, the finished campaign is marked ``completed``, and the
api's ``/metrics`` shows the other processes' metrics (the worker's provider requests, the scheduler's
heartbeat), which it showed as 0 before ``campaigns up`` shared one multiprocess directory."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from campaigns.models import Campaign
from tests.e2e.stack import Stack, healthz, poll, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ASSISTANT = "assistant-e2e"
EXPIRED, UNCONFIRMED, IN_CAMPAIGN = "+15550002001", "+15550002002", "+12125550143"


@pytest.fixture
def stack(database_url: str, redis_url: str, tmp_path: Path, sessions: object) -> Iterator[Stack]:
    with running_stack(database_url, redis_url, tmp_path, env={"CAMPAIGNS_TIME_WARP": "60"}) as running:
        yield running


def _metric(text: str, name: str, **labels: str) -> float:
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and set(labels.items()) <= set(sample.labels.items())
    ]
    assert found, f"no sample {name}{labels}"
    return sum(found)


def test_expired_fails_unconfirmed_completes_and_metrics_tell_the_truth(
    stack: Stack, sessions: sessionmaker[Session]
) -> None:
    api, sim = stack.client(), httpx.Client(base_url=stack.sim, timeout=10)
    script = {"targets": {EXPIRED: ["expired"], UNCONFIRMED: ["delivery_unconfirmed"], IN_CAMPAIGN: ["expired"]}}
    assert sim.post("/_simulator/script", json=script).status_code == 200
    urls = {}
    for to in (EXPIRED, UNCONFIRMED):
        # app time runs 60x: read it before each create and leave 5 real seconds, so a slow request on a busy
        # machine does not turn "due soon" into "in the past"
        app_now = datetime.fromisoformat(poll(lambda: healthz(api), timeout=30)["time"])
        created = api.post(
            f"/v2/ai/assistants/{ASSISTANT}/scheduled_events",
            json={"telnyx_conversation_channel": "sms_chat", "telnyx_end_user_target": to,
                  "telnyx_agent_target": "+15553456789", "text": "hello",
                  "scheduled_at_fixed_datetime": (app_now + timedelta(seconds=300)).isoformat()},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        urls[to] = f"/v2/ai/assistants/{ASSISTANT}/scheduled_events/{created.json()['scheduled_event_id']}"
    settings = {"name": "sms-e2e", "assistant_id": ASSISTANT, "telnyx_agent_target": "+15553456789",
                "telnyx_conversation_channel": "sms_chat", "text": "hello", "ruleset": "none",
                "default_region": "US"}  # fmt: skip
    campaign = api.post(
        "/v1/campaigns",
        files={"file": ("list.csv", io.BytesIO(f"phone\n{IN_CAMPAIGN}\n".encode()), "text/csv")},
        data={"campaign": json.dumps(settings)},
    )
    assert campaign.status_code in (200, 201, 202), campaign.text
    campaign_id = campaign.json()["id"]

    def finished(url: str) -> dict[str, Any] | None:
        event: dict[str, Any] = api.get(url).json()
        return event if event["status"] in ("completed", "failed") else None

    def stored_status() -> str | None:
        with sessions() as s:
            row = s.get(Campaign, campaign_id)
            return row.status if row is not None and row.status == "completed" else None

    try:
        expired = poll(lambda: finished(urls[EXPIRED]), timeout=60)
        unconfirmed = poll(lambda: finished(urls[UNCONFIRMED]), timeout=60)
        poll(stored_status, timeout=60, interval=0.5)  # the reconcile beat marked it
    except AssertionError:
        print(stack.tail())
        raise
    assert expired["status"] == "failed" and expired["errors"] == ["message expired"], expired
    assert unconfirmed["status"] == "completed", unconfirmed
    shown = api.get(f"/v1/campaigns/{campaign_id}").json()
    assert (shown["status"], shown["counts"]["failed"]) == ("completed", 1), shown

    scraped = api.get("/metrics")
    assert scraped.status_code == 200
    text = scraped.text
    # The worker's counters and the scheduler's heartbeat, seen from the api's /metrics.
    assert _metric(text, "campaigns_provider_requests_total", endpoint="messages", result="success") >= 3
    assert _metric(text, "campaigns_scheduler_last_iteration_timestamp_seconds") > 0
    assert _metric(text, "campaigns_attempt_outcomes_total", channel="sms_chat", outcome="expired") >= 2
    assert _metric(text, "campaigns_attempt_outcomes_total", channel="sms_chat", outcome="delivery_unconfirmed") >= 1
    assert _metric(text, "campaigns_active_campaigns") == 0
