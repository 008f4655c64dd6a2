"""What a worker that dies mid-batch can cost (issue 21): only the requests on the wire are unknown; attempts it
claimed but had not started go back to pending with their budget intact; a hold opened after the claim stops
the requests that have not left."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy import select

import campaigns.dispatch as dispatch_module
from campaigns import lifecycle
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.dispatch import dispatch_attempts
from campaigns.lifecycle import holds
from campaigns.models import CallAttempt
from campaigns.telephony import ProviderHeld
from tests.campaigns.lifecycle.harness import TEXML, claim, create, load
from tests.factories import call_body
from worker.runtime import Runtime


def target(i: int) -> str:
    return f"+1555123460{i}"


def test_attempts_a_dead_worker_had_not_started_go_back_to_pending_with_their_budget(
    runtime: Runtime, clock: FrozenClock
) -> None:
    """The worker re-checked its batch (``begin_dispatch_many`` committed) and died before any request left:
    nothing is unknown, so when the claim lease expires every event is pending again, no budget spent."""
    events = [create(runtime, call_body(clock.now(), telnyx_end_user_target=target(i))) for i in range(3)]
    clock.advance(600)
    attempts = claim(runtime)
    with unit_of_work(runtime.sessions) as s:
        assert len(lifecycle.begin_dispatch_many(s, attempts, now=clock.now())) == 3
    with unit_of_work(runtime.sessions) as s:
        states = s.scalars(select(CallAttempt.state).where(CallAttempt.id.in_(attempts))).all()
    assert sorted(states) == ["claimed"] * 3  # nothing marked ``sending`` ahead of its own request
    clock.advance(runtime.settings.claim_lease_secs + 1)
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert (report.withdrawn, report.failed_unknown) == (3, 0)
    for event_id in events:
        event = load(runtime.sessions, event_id)
        assert (event.status, event.retry_count, event.attempts, event.errors) == ("pending", 0, [], [])


@respx.mock
def test_each_attempt_is_committed_sending_by_the_request_that_carries_it(
    runtime: Runtime, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a request reaches the provider its own attempt is committed ``sending`` (at-most-once), and an
    attempt of the same batch whose request has not left yet is still ``claimed``: a kill at this moment strands
    nothing else. (One sending thread, so the batch's second request waits for the first.)"""
    pool = ThreadPoolExecutor(max_workers=1)
    monkeypatch.setattr(dispatch_module, "request_pool", lambda name, size: pool)
    seen: dict[str, list[str]] = {}

    def provider(request: httpx.Request) -> httpx.Response:
        hint = httpx.URL(json.loads(request.content)["StatusCallback"]).params["attempt_id"]
        attempt_id = hint.split(".", 1)[0]  # the hint is "<attempt id>.<mac>" (campaigns.telephony.hints)
        with unit_of_work(runtime.sessions) as s:
            rows = s.execute(select(CallAttempt.id, CallAttempt.state).where(CallAttempt.id.in_(attempts))).all()
        seen[attempt_id] = sorted(state for aid, state in rows if str(aid) != attempt_id)
        assert {str(aid): state for aid, state in rows}[attempt_id] == "sending"
        to = json.loads(request.content)["To"]
        return httpx.Response(200, json={"from": "+1", "to": to, "status": "queued", "call_sid": f"v3:{to}"})

    respx.post(TEXML).mock(side_effect=provider)
    for i in range(2):
        create(runtime, call_body(clock.now(), telnyx_end_user_target=target(i)))
    clock.advance(600)
    attempts = claim(runtime)
    words = dispatch_attempts(
        runtime.sessions, attempts, providers=runtime.providers, clock=clock, settings=runtime.settings
    )
    assert words == ["sent", "sent"]
    # The first request on the wire saw the other attempt still ``claimed``, the second saw the first ``sending``
    # (its answer is recorded once the whole batch has settled).
    assert sorted(map(tuple, seen.values())) == [("claimed",), ("sending",)]


@respx.mock
def test_attempts_claimed_before_a_hold_opened_do_not_send(runtime: Runtime, clock: FrozenClock) -> None:
    """A 401 met by another worker opens the hold after these were claimed: right before each request leaves the
    hold is read again, so nothing goes out; the events wait for the hold, budget intact (issue 17)."""
    route = respx.post(TEXML).mock(return_value=httpx.Response(500))
    events = [create(runtime, call_body(clock.now(), telnyx_end_user_target=target(i))) for i in range(3)]
    clock.advance(600)
    attempts = claim(runtime)
    assert len(attempts) == 3
    held = ProviderHeld("401", reason="api_key", detail="provider refused the API key (401)")
    with unit_of_work(runtime.sessions) as s:
        holds.open_hold(s, "texml", held, now=clock.now(), probe_at=clock.now() + timedelta(minutes=1))
    words = dispatch_attempts(
        runtime.sessions, attempts, providers=runtime.providers, clock=clock, settings=runtime.settings
    )
    assert words == ["skipped"] * 3
    assert route.call_count == 0
    for event_id in events:
        event = load(runtime.sessions, event_id)
        assert (event.status, event.retry_count, event.attempts) == ("pending", 0, [])
        assert event.deferred_reason == "provider refused the API key (401)"
    with unit_of_work(runtime.sessions) as s:  # the probe succeeds: the parked events are due again
        assert holds.close_hold(s, "texml", now=clock.now()) == 3
