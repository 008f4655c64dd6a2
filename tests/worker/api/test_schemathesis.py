"""Schemathesis against the app on the test database: every answer conforms to ``/openapi.json``.

Requests are generated from the schema (valid and invalid ones) for the operator and Telnyx-compatible routes;
each answer must be documented (status code, content type) and match its documented body, errors included. The
signed webhooks are left out: generated bodies are never signed, so they would only ever see the 401.
Deterministic (``derandomize``) and bounded (``max_examples``), so it runs the same cases in a few seconds;
``make fuzz`` (part of ``make chaos``) runs it long and random (``tests/fuzzing.py``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.models import CallAttempt
from tests.fuzzing import fuzz_derandomized, fuzz_examples
from worker.api import create_app
from worker.runtime import Runtime

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# One app for the module, so that the schema (and one test per operation) is known when pytest collects; each test
# points it at its own runtime below. (``schemathesis.pytest.from_fixture`` would build it per test, but it does
# not run under pytest 9: it sets ``Function._nodeid``, which pytest 9 no longer has.)
APP = create_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path_regex="^/webhooks/")


@pytest.fixture
def served(runtime: Runtime) -> Iterator[None]:
    queued: list[uuid.UUID] = []
    APP.state.runtime, APP.state.enqueue_import = runtime, queued.append
    try:
        yield
    finally:
        APP.state.runtime, APP.state.enqueue_import = None, None


@schema.parametrize()
@settings(
    max_examples=max(12, fuzz_examples(12) // 20),  # per operation: a twentieth of a long run's examples
    derandomize=fuzz_derandomized(),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_conforms_to_the_schema(case: schemathesis.Case, served: None) -> None:
    case.call_and_validate(checks=CHECKS)


# --- every operation once more, on data that exists ---------------------------------------------------------
# Generated requests seldom find a resource (random ids, assistants, campaigns), so the answers with a body are
# also checked on seeded data, each operation at least once, each documented answer it can give.

EVENTS = "/v2/ai/assistants/a1/scheduled_events"
CSV = ("l.csv", b"phone,name\n+12125550101,Ana\n+12125550102,Ben\n", "text/csv")


class Caller:
    """Sends a request to the app and checks the answer against the operation it names (``template``)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, method: str, template: str, url: str | None = None, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, url or template, **kwargs)
        operation = schema[template][method]
        assert str(response.status_code) in operation.definition.raw["responses"], (method, url, response.text)
        operation.validate_response(response)
        self.seen.add((method, template))
        return response


@pytest.fixture
def seeded(runtime: Runtime, tmp_path: Path) -> Iterator[Caller]:
    (tmp_path / "lists").mkdir()
    rt = Runtime(
        settings=runtime.settings.model_copy(update={"recurring_dir": str(tmp_path)}),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    APP.state.runtime, APP.state.enqueue_import = rt, (lambda _: None)
    try:
        with TestClient(APP) as client:
            yield Caller(client)
    finally:
        APP.state.runtime, APP.state.enqueue_import = None, None


def test_every_operation_answers_as_documented_on_real_data(
    seeded: Caller, runtime: Runtime, clock: FrozenClock
) -> None:
    at = (clock.now() + timedelta(hours=1)).isoformat()
    call_body = {"telnyx_conversation_channel": "phone_call", "telnyx_end_user_target": "+15551234567",
                 "telnyx_agent_target": "+15553456789", "scheduled_at_fixed_datetime": at,
                 "max_retries_client_errors": 2, "retry_interval_secs": 300}  # fmt: skip
    sms_body = {**call_body, "telnyx_conversation_channel": "sms_chat", "text": "Hi"}
    for key in ("max_retries_client_errors", "retry_interval_secs"):
        sms_body.pop(key)
    one = f"{EVENTS}/{{event_id}}"
    v2 = "/v2/ai/assistants/{assistant_id}/scheduled_events"
    v2_one = v2 + "/{event_id}"

    call = seeded("POST", v2, EVENTS, json=call_body).json()
    seeded("POST", v2, EVENTS, json=sms_body)
    seeded("POST", v2, EVENTS, json=call_body, headers={"Idempotency-Key": "k"})
    assert seeded("POST", v2, EVENTS, json=sms_body, headers={"Idempotency-Key": "k"}).status_code == 422
    assert seeded("POST", v2, EVENTS, json={"telnyx_conversation_channel": "fax"}).status_code == 400
    with unit_of_work(runtime.sessions) as s:
        for number, (call_status, last_status) in enumerate((("unknown", None), (None, "initiated")), start=1):
            s.add(CallAttempt(event_id=uuid.UUID(call["scheduled_event_id"]), attempt_number=number,
                              provider="texml", state="sent", claimed_at=clock.now(), attempted_at=clock.now(),
                              call_status=call_status, last_status=last_status,
                              outcome=call_status))  # fmt: skip
    assert len(seeded("GET", v2, EVENTS, params={"page[size]": 250}).json()["data"]) == 3
    assert seeded("GET", v2, EVENTS, params={"page[size]": 0}).status_code == 400
    attempts = seeded("GET", v2_one, one.format(event_id=call["scheduled_event_id"])).json()["call_attempts"]
    assert [(a["call_status"], a["outcome"]) for a in attempts] == [("failed", "unknown"), ("ringing", None)]
    assert seeded("GET", v2_one, one.format(event_id=uuid.uuid4())).status_code == 404

    campaigns, campaign = "/v1/campaigns", "/v1/campaigns/{campaign_id}"
    settings = {"name": "c", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none",
                "telnyx_conversation_channel": "sms_chat", "text": "Hi {{name}}"}  # fmt: skip
    form = {"campaign": json.dumps(settings)}
    assert seeded("POST", campaigns, files={"file": CSV}, data=form, params={"dry_run": "true"}).status_code == 200
    assert seeded("POST", campaigns, files={"file": CSV}, data={"campaign": "{"}).status_code == 400
    created = seeded("POST", campaigns, files={"file": CSV}, data=form).json()
    url = campaign.format(campaign_id=created["id"])
    seeded("GET", campaigns)
    seeded("GET", campaign, url)
    assert seeded("GET", campaign, campaign.format(campaign_id=uuid.uuid4())).status_code == 404
    seeded("POST", campaign + "/pause", url + "/pause")
    assert seeded("POST", campaign + "/pause", url + "/pause").status_code == 409
    seeded("POST", campaign + "/resume", url + "/resume")
    seeded("POST", campaign + "/cancel", url + "/cancel")
    assert {e["status"] for e in seeded("GET", campaign + "/events", url + "/events").json()["data"]} == {"canceled"}
    assert seeded("GET", v2, EVENTS, params={"status": "failed"}).json()["meta"]["total_results"] == 2
    seeded("GET", campaign + "/export.csv", url + "/export.csv")
    seeded("GET", campaign + "/errors.csv", url + "/errors.csv")
    seeded("GET", campaign + "/attempts.csv", url + "/attempts.csv")
    assert seeded("DELETE", v2_one, one.format(event_id=call["scheduled_event_id"])).status_code == 204
    assert seeded("DELETE", v2_one, one.format(event_id=call["scheduled_event_id"])).status_code == 404

    suppressions, number = "/v1/suppressions", "/v1/suppressions/{phone}"
    assert seeded("POST", suppressions, json={"phone_number": "+12125550147"}).status_code == 201
    assert seeded("POST", suppressions, json={"phone_number": "+12125550147"}).status_code == 200
    seeded("GET", suppressions)
    seeded("GET", number, "/v1/suppressions/+12125550147")
    seeded("POST", suppressions + "/import", content=b"2125550101\nnope\n", headers={"content-type": "text/plain"})
    assert seeded("DELETE", number, "/v1/suppressions/+12125550147").status_code == 204
    assert seeded("GET", number, "/v1/suppressions/+12125550147").status_code == 404
    assert seeded("DELETE", number, "/v1/suppressions/+12125550147").status_code == 404

    recurring, definition = "/v1/recurring", "/v1/recurring/{ref}"
    template = {"assistant_id": "a1", "telnyx_agent_target": "+15553456789"}
    body = {"name": "reminders", "cron": "0 7 * * *", "timezone": "America/New_York", "source": "lists/*.csv",
            "dedupe_key": ["phone"], "campaign": template}  # fmt: skip
    assert seeded("POST", recurring, json=body).status_code == 201
    assert seeded("POST", recurring, json=body).status_code == 200
    seeded("GET", recurring)
    seeded("GET", definition, "/v1/recurring/reminders")
    assert seeded("POST", definition + "/run-now", "/v1/recurring/reminders/run-now").status_code == 201
    assert seeded("GET", definition, "/v1/recurring/nope").status_code == 404
    assert seeded("DELETE", definition, "/v1/recurring/reminders").status_code == 204
    assert seeded("DELETE", definition, "/v1/recurring/reminders").status_code == 404

    seeded("GET", "/healthz")
    seeded("GET", "/readyz")
    seeded("GET", "/metrics")

    documented = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert seeded.seen == documented, f"not exercised: {sorted(documented - seeded.seen)}"
