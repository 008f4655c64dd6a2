"""An attempt left ``sending`` is looked at once its short sending lease expires, not the claim lease (issue 21):
soon enough that a dead worker's Call Control dial is re-sent within Telnyx's 60 s dedupe window, and never in a
way that lets a live but slow worker cause a second call."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
import respx
from pydantic import ValidationError
from sqlalchemy import select

from campaigns import lifecycle
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.models import CallAttempt
from campaigns.settings import Settings, sending_lease
from tests.campaigns.lifecycle.harness import TEXML, claim, create, dispatch, load, reconcile_as_beat, runtime_with
from tests.conftest import TEST_TELNYX_BASE_URL
from tests.factories import call_body
from worker.celery_app import reconcile_every
from worker.runtime import Runtime

CALLS = f"{TEST_TELNYX_BASE_URL}/calls"
ACCEPTED = {"data": {"call_control_id": "v3:cc-1", "call_leg_id": "leg-1", "call_session_id": "s-1"}}


@pytest.fixture
def cc_runtime(runtime: Runtime) -> Runtime:
    return runtime_with(runtime, call_provider="call_control", telnyx_connection_id="cc-1")


def claimed(rt: Runtime, clock: FrozenClock) -> tuple[uuid.UUID, uuid.UUID]:
    event_id = create(rt, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(rt)
    return event_id, attempt_id


def past_the_sending_lease(rt: Runtime, clock: FrozenClock) -> None:
    clock.advance(sending_lease(rt.settings) + 1)


def test_the_sending_lease_is_the_provider_timeout_and_a_margin_and_must_outlast_it() -> None:
    assert sending_lease(Settings(provider_timeout_secs=10)) == 20
    assert sending_lease(Settings(provider_timeout_secs=10, sending_lease_secs=30)) == 30
    with pytest.raises(ValidationError, match=r"CAMPAIGNS_SENDING_LEASE_SECS \(10\) must be longer than "):
        Settings(provider_timeout_secs=10, sending_lease_secs=10)
    # Beat looks twice between the lease (20 s) and the end of the re-send window (45 s).
    assert reconcile_every(Settings()) == 12.5
    assert reconcile_every(Settings(reconcile_interval_secs=1)) == 1


@respx.mock
def test_a_dial_left_sending_is_sent_again_once_the_sending_lease_expires(
    cc_runtime: Runtime, clock: FrozenClock
) -> None:
    """The worker's request is on the wire (committed ``sending``) and its worker gives no sign of life: when the
    sending lease (provider timeout + 10 s, far less than the 120 s claim lease) expires, the reconciler sends the
    dial again with the same command_id, inside Telnyx's 60 s window. The worker turns out to be merely slow: its
    answer is the same call (Telnyx ignored the repeat), recorded once."""
    event_id, attempt_id = claimed(cc_runtime, clock)
    reports: list[lifecycle.ReconcileReport] = []
    requests: list[httpx.Request] = []

    def provider(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:  # the worker's request: while it waits, the sending lease expires and beat runs
            past_the_sending_lease(cc_runtime, clock)
            reports.append(reconcile_as_beat(cc_runtime))
        return httpx.Response(200, json=ACCEPTED)

    route = respx.post(CALLS).mock(side_effect=provider)
    assert dispatch(cc_runtime, attempt_id) == "sent"
    assert (reports[0].resent, reports[0].failed_unknown) == (1, 0)
    assert [json.loads(call.request.content)["command_id"] for call in route.calls] == [str(attempt_id)] * 2
    event = load(cc_runtime.sessions, event_id)
    (attempt,) = event.attempts
    assert (event.status, attempt.state, attempt.provider_id, event.errors) == ("in_progress", "sent", "v3:cc-1", [])
    assert event.lease_expires_at == clock.now() + timedelta(seconds=cc_runtime.settings.call_lease_secs)


@respx.mock
def test_a_late_refusal_from_a_slow_worker_cannot_withdraw_an_attempt_whose_repeat_was_accepted(
    cc_runtime: Runtime, clock: FrozenClock
) -> None:
    """The reconciler sends the dial again; meanwhile the slow worker records its own late answer, a 503. Had it
    withdrawn the attempt (back to pending, budget intact), the accepted repeat would be a call off the record
    and the event would be dialled again with a new attempt: a double call. The reconciler took the attempt over
    (``unknown``), so the late refusal records nothing."""
    event_id, attempt_id = claimed(cc_runtime, clock)
    with unit_of_work(cc_runtime.sessions) as s:
        lease = timedelta(seconds=sending_lease(cc_runtime.settings))
        assert lifecycle.begin_dispatch(s, attempt_id, provider="call_control", now=clock.now(), dispatch_lease=lease)
    past_the_sending_lease(cc_runtime, clock)

    def repeat(request: httpx.Request) -> httpx.Response:
        with unit_of_work(cc_runtime.sessions) as s:  # the worker's 503 arrives while the repeat is on the wire
            lifecycle.record_refused(s, attempt_id, "provider refused (503)", now=clock.now(), retry_at=clock.now())
        return httpx.Response(200, json=ACCEPTED)

    respx.post(CALLS).mock(side_effect=repeat)
    report = reconcile_as_beat(cc_runtime)
    assert report.resent == 1
    event = load(cc_runtime.sessions, event_id)
    (attempt,) = event.attempts
    assert (event.status, event.retry_count, attempt.state, attempt.provider_id) == (
        "in_progress",
        0,
        "sent",
        "v3:cc-1",
    )


@respx.mock
def test_a_slow_texml_request_is_never_sent_twice(runtime: Runtime, clock: FrozenClock) -> None:
    """TeXML has no idempotency key: when the sending lease expires under a slow request, the reconciler never
    sends it again (without an account SID it fails closed as before); the worker's late acceptance still keeps
    the call id, so the call's own callbacks can settle the event (late truth wins)."""
    event_id, attempt_id = claimed(runtime, clock)
    reports: list[lifecycle.ReconcileReport] = []

    def provider(request: httpx.Request) -> httpx.Response:
        past_the_sending_lease(runtime, clock)
        reports.append(reconcile_as_beat(runtime))
        return httpx.Response(200, json={"call_sid": "v3:texml-1", "status": "queued"})

    route = respx.post(TEXML).mock(side_effect=provider)
    dispatch(runtime, attempt_id)
    assert route.call_count == 1
    assert (reports[0].resent, reports[0].failed_unknown) == (0, 1)
    with runtime.sessions() as s:
        attempts = s.scalars(select(CallAttempt).where(CallAttempt.event_id == event_id)).all()
    assert [(a.id, a.provider_id) for a in attempts] == [(attempt_id, "v3:texml-1")]
    assert load(runtime.sessions, event_id).status == "failed"
