"""An attempt whose request may not have reached a provider that ignores repeats (Call Control's ``command_id``)
is sent again with the same id instead of failed closed (issue 21)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy.orm import Session, sessionmaker

from campaigns import lifecycle, telephony
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.settings import Settings, sending_lease
from tests.campaigns.lifecycle.harness import claim, create, dispatch, load
from tests.conftest import TEST_TELNYX_BASE_URL
from tests.factories import call_body
from worker.runtime import Runtime

CALLS = f"{TEST_TELNYX_BASE_URL}/calls"
WINDOW = timedelta(seconds=45)


@pytest.fixture
def cc_runtime(settings: Settings, clock: FrozenClock, sessions: sessionmaker[Session]) -> Runtime:
    cc = settings.model_copy(update={"call_provider": "call_control", "telnyx_connection_id": "cc-1"})
    client = httpx.Client(base_url=cc.telnyx_base_url + "/", timeout=2.0)
    return Runtime(settings=cc, clock=clock, sessions=sessions, providers=telephony.providers_from_settings(cc, client))


def died_while_sending(rt: Runtime, clock: FrozenClock) -> tuple[uuid.UUID, uuid.UUID]:
    """An event whose worker committed ``sending`` and died: nobody knows whether the dial left."""
    event_id = create(rt, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(rt)
    with unit_of_work(rt.sessions) as s:
        provider = rt.providers.calls.name
        assert lifecycle.begin_dispatch(s, attempt_id, provider=provider, now=clock.now(), dispatch_lease=timedelta(0))
    clock.advance(1)
    return event_id, attempt_id


def reconcile(rt: Runtime, clock: FrozenClock) -> lifecycle.ReconcileReport:
    return lifecycle.reconcile_expired_leases(
        rt.sessions, now=clock.now(), providers=rt.providers, call_lease=timedelta(hours=1), resend_within=WINDOW
    )


@respx.mock
def test_an_unknown_dial_is_sent_again_with_the_same_command_id(cc_runtime: Runtime, clock: FrozenClock) -> None:
    route = respx.post(CALLS).mock(return_value=httpx.Response(200, json={"data": {"call_control_id": "v3:cc-1"}}))
    event_id, attempt_id = died_while_sending(cc_runtime, clock)
    report = reconcile(cc_runtime, clock)
    assert (report.resent, report.failed_unknown) == (1, 0)
    assert json.loads(route.calls.last.request.content)["command_id"] == str(attempt_id)
    event = load(cc_runtime.sessions, event_id)
    (attempt,) = event.attempts
    assert (event.status, attempt.state, attempt.provider_id, event.errors) == ("in_progress", "sent", "v3:cc-1", [])
    assert event.lease_expires_at == clock.now() + timedelta(hours=1)


@respx.mock
def test_a_repeat_the_provider_does_not_accept_fails_closed(cc_runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(CALLS).mock(return_value=httpx.Response(503))
    event_id, _ = died_while_sending(cc_runtime, clock)
    report = reconcile(cc_runtime, clock)
    assert (report.resent, report.failed_unknown) == (0, 1)
    event = load(cc_runtime.sessions, event_id)
    assert event.status == "failed"
    assert "sent again: TransientProviderError" in event.errors[-1]


@respx.mock
def test_past_the_dedupe_window_nothing_is_sent_again(cc_runtime: Runtime, clock: FrozenClock) -> None:
    """Telnyx ignores a repeated command_id only within 60 s: later, a repeat would be a second call."""
    route = respx.post(CALLS).mock(return_value=httpx.Response(200, json={"data": {"call_control_id": "v3:cc-1"}}))
    event_id, _ = died_while_sending(cc_runtime, clock)
    clock.advance(WINDOW.total_seconds())
    report = reconcile(cc_runtime, clock)
    assert (report.resent, report.failed_unknown, route.call_count) == (0, 1, 0)
    assert load(cc_runtime.sessions, event_id).status == "failed"


@respx.mock
def test_texml_has_no_idempotency_key_so_nothing_is_sent_again(runtime: Runtime, clock: FrozenClock) -> None:
    route = respx.post(f"{TEST_TELNYX_BASE_URL}/texml/ai_calls/texml-app-1").mock(return_value=httpx.Response(200))
    event_id, _ = died_while_sending(runtime, clock)
    report = reconcile(runtime, clock)
    assert (report.resent, report.failed_unknown, route.call_count) == (0, 1, 0)
    assert load(runtime.sessions, event_id).status == "failed"


@respx.mock
def test_a_dial_that_timed_out_is_sent_again_within_the_dedupe_window(cc_runtime: Runtime, clock: FrozenClock) -> None:
    """The worker's own request timed out (no answer after sending): the attempt gets the short sending lease,
    not the hour-long call lease, so the reconciler repeats it while Telnyx still ignores a repeated command_id."""
    route = respx.post(CALLS).mock(
        side_effect=[
            httpx.ReadTimeout("no answer"),
            httpx.Response(200, json={"data": {"call_control_id": "v3:cc-late"}}),
        ]
    )
    event_id = create(cc_runtime, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(cc_runtime)
    assert dispatch(cc_runtime, attempt_id) == "unknown"
    lease = timedelta(seconds=sending_lease(cc_runtime.settings))
    assert load(cc_runtime.sessions, event_id).lease_expires_at == clock.now() + lease
    clock.advance(lease.total_seconds() + 1)
    report = reconcile(cc_runtime, clock)
    assert (report.resent, report.failed_unknown) == (1, 0)
    assert [json.loads(c.request.content)["command_id"] for c in route.calls] == [str(attempt_id)] * 2
    (attempt,) = load(cc_runtime.sessions, event_id).attempts
    assert (attempt.state, attempt.provider_id) == ("sent", "v3:cc-late")
