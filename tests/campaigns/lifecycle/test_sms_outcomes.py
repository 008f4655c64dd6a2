"""Every final messaging status Telnyx reports, and what it does to the event (campaigns/lifecycle/outcomes.py).

Telnyx's ``to[].status`` values: the official SDK's ``telnyx/types/outbound_message_payload.py`` (4.189.0).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
import respx
from prometheus_client import REGISTRY

from campaigns import lifecycle, telephony, webhooks
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from tests.campaigns.lifecycle.harness import MESSAGES, claim, create, dispatch, load
from tests.factories import sms_body
from worker.runtime import Runtime


def _sent_message(runtime: Runtime, clock: FrozenClock) -> uuid.UUID:
    respx.post(MESSAGES).mock(return_value=httpx.Response(200, json={"data": {"id": "msg-1", "to": []}}))
    event_id = create(runtime, sms_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "sent"
    return event_id


def _receipt(runtime: Runtime, clock: FrozenClock, kind: str, status: str) -> str:
    payload = {"id": "msg-1", "to": [{"status": status}]}
    body = {"data": {"event_type": kind, "id": f"{kind}-{status}", "payload": payload}}
    with unit_of_work(runtime.sessions) as s:
        return webhooks.record_and_apply(s, telephony.parse_json_event(body, None), b"{}", now=clock.now())


def _outcomes(outcome: str) -> float:
    labels = {"channel": "sms_chat", "outcome": outcome, "answered_by": "none"}
    return REGISTRY.get_sample_value("campaigns_attempt_outcomes_total", labels) or 0.0


@pytest.mark.parametrize(
    ("final", "status"),
    [
        ("delivered", "completed"),
        ("delivery_unconfirmed", "completed"),
        ("delivery_failed", "failed"),
        ("sending_failed", "failed"),
        ("expired", "failed"),
    ],
)
@respx.mock
def test_a_final_receipt_settles_the_event_and_records_the_outcome(
    runtime: Runtime, clock: FrozenClock, final: str, status: str
) -> None:
    """``expired`` used to count as progress after ``sent``, and the reconciler later closed the message as sent:
    the event completed. ``delivery_unconfirmed`` completed with nothing to tell it from ``delivered``."""
    event_id = _sent_message(runtime, clock)
    before = _outcomes(final)
    assert _receipt(runtime, clock, "message.sent", "sent") == "progress"
    assert _receipt(runtime, clock, "message.finalized", final) == final
    event = load(runtime.sessions, event_id)
    (attempt,) = event.attempts
    assert (event.status, attempt.call_status, attempt.outcome) == (status, final, final)
    assert event.errors == ([] if status == "completed" else [f"message {final}"])
    assert _outcomes(final) == before + 1

    clock.advance(7200)  # the reconciler finds nothing left to settle
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert report == lifecycle.ReconcileReport()
    assert load(runtime.sessions, event_id).status == status


@respx.mock
def test_a_sent_message_with_no_final_receipt_completes_with_outcome_sent(runtime: Runtime, clock: FrozenClock) -> None:
    event_id = _sent_message(runtime, clock)
    assert _receipt(runtime, clock, "message.sent", "sent") == "progress"
    before = _outcomes("sent")
    clock.advance(7200)
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert report.completed_sms == 1
    event = load(runtime.sessions, event_id)
    assert (event.status, event.attempts[0].outcome) == ("completed", "sent")
    assert _outcomes("sent") == before + 1
