"""End to end (``campaigns up`` + simulator, clock warped 60x): the exports that update records.

A CSV with numbers written three ways goes through the real stack; the number scripted ``no-answer`` then
``completed`` is retried. ``export.csv`` joins back to the upload on the number as written, with answer and end
times; ``attempts.csv`` has the no-answer before the answered call, each with its own dispatch time.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from tests.e2e.stack import poll
from tests.e2e.test_dnc_e2e import AGENT, clients
from tests.e2e.test_up import ASSISTANT, stack

__all__ = ["stack"]  # the fixture, imported for the tests below
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

UPLOAD = "Phone_Number,First Name\r\n(212) 555-0181,Ana\r\n212.555.0182,Bo\r\n+1 212 555 0183,Cy\r\n"


def test_the_exports_join_back_and_keep_every_attempt(stack: dict[str, Any]) -> None:
    api, sim = clients(stack)
    script = {"targets": {"+12125550181": ["no-answer", "completed"]}, "default": "completed"}
    assert sim.post("/_simulator/script", json=script).status_code == 200
    settings = {"name": "records e2e", "assistant_id": ASSISTANT, "telnyx_agent_target": AGENT, "ruleset": "none",
                "default_region": "US", "max_retries_client_errors": 1, "retry_interval_secs": 60}  # fmt: skip
    created = api.post(
        "/v1/campaigns",
        files={"file": ("list.csv", UPLOAD.encode(), "text/csv")},
        data={"campaign": json.dumps(settings)},
    )
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]

    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/v1/campaigns/{campaign_id}").json()
        return body if body["counts"]["completed"] == 3 else None

    try:
        poll(done, timeout=120)
    except AssertionError:
        print(api.get(f"/v1/campaigns/{campaign_id}").json())
        print((stack["logs"] / "up.log").read_text()[-5000:])
        raise

    results = list(csv.DictReader(io.StringIO(api.get(f"/v1/campaigns/{campaign_id}/export.csv").text)))
    uploaded = list(csv.DictReader(io.StringIO(UPLOAD)))
    by_written = {r["phone_as_written"].removeprefix("'"): r for r in results}  # "+1 212 …" keeps its guard
    assert sorted(by_written) == sorted(u["Phone_Number"] for u in uploaded)
    for original in uploaded:
        assert by_written[original["Phone_Number"]]["row.First Name"] == original["First Name"]
    retried = by_written["(212) 555-0181"]
    assert (retried["phone"], retried["attempts"], retried["attempt_outcomes"]) == (
        "+12125550181",
        "2",
        "no-answer;answered",
    )
    assert retried["first_attempt_at"] < retried["last_attempt_at"] <= retried["answered_at"] <= retried["ended_at"]

    attempts = list(csv.DictReader(io.StringIO(api.get(f"/v1/campaigns/{campaign_id}/attempts.csv").text)))
    assert len(attempts) == 4  # one per attempt: 2 + 1 + 1
    history = [a for a in attempts if a["phone"] == "+12125550181"]
    assert [(a["attempt_number"], a["call_status"], a["outcome"]) for a in history] == [
        ("1", "no-answer", "no-answer"),
        ("2", "completed", "answered"),
    ]
    assert history[0]["answered_at"] == "" and history[1]["answered_at"] != ""
    assert history[0]["dispatched_at"] == retried["first_attempt_at"]
    assert history[1]["dispatched_at"] == retried["last_attempt_at"]
    assert {a["phone_as_written"] for a in history} == {"(212) 555-0181"}
