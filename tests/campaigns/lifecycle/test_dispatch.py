"""Dispatching at most once: what the provider answered, and what is never re-sent (campaigns/lifecycle/dispatch.py)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import respx

from campaigns import lifecycle
from campaigns.clock import FrozenClock
from tests.campaigns.lifecycle.harness import (
    TEXML,
    claim,
    create,
    dispatch,
    load,
    texml_callback,
)
from tests.factories import call_body
from worker.runtime import Runtime


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(429, json={"errors": [{"code": "90103", "title": "Too many dials per second"}]}),
        httpx.Response(429, json={"errors": [{"code": "10011", "title": "Too many requests"}]}),
        httpx.Response(503, text="unavailable"),
    ],
)
@respx.mock
def test_refusals_consume_no_budget(runtime: Runtime, clock: FrozenClock, response: httpx.Response) -> None:
    route = respx.post(TEXML).mock(side_effect=[response, httpx.Response(200, json={"call_sid": "v3:x"})])
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=1, retry_interval_secs=60))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "refused"
    event = load(runtime.sessions, event_id)
    assert (event.status, event.retry_count, event.attempts) == ("pending", 0, [])
    assert event.scheduled_at_fixed_datetime == clock.now() + timedelta(seconds=runtime.settings.transient_backoff_secs)
    assert event.deferred_reason and "provider refused" in event.deferred_reason
    assert claim(runtime) == []  # not before the back-off
    clock.advance(runtime.settings.transient_backoff_secs)
    (second,) = claim(runtime)
    assert dispatch(runtime, second) == "sent"
    event = load(runtime.sessions, event_id)
    assert [a.attempt_number for a in event.attempts] == [1]
    assert route.call_count == 2


@respx.mock
def test_connection_refused_is_transient(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=httpx.ConnectError("refused"))
    event_id = create(runtime, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "refused"
    assert load(runtime.sessions, event_id).status == "pending"


@respx.mock
def test_provider_4xx_fails_the_event_with_its_error(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(
        return_value=httpx.Response(
            422, json={"errors": [{"code": "10016", "title": "Invalid destination", "detail": "To is not dialable"}]}
        )
    )
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=3, retry_interval_secs=60))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "rejected"
    event = load(runtime.sessions, event_id)
    assert event.status == "failed"
    assert event.retry_count == 0
    assert len(event.errors) == 1 and "10016" in event.errors[0] and "To is not dialable" in event.errors[0]


@respx.mock
def test_timeout_after_sending_is_never_resent(runtime: Runtime, clock: FrozenClock) -> None:
    route = respx.post(TEXML).mock(side_effect=httpx.ReadTimeout("slow"))
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=3, retry_interval_secs=60))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "unknown"
    assert dispatch(runtime, attempt_id) == "skipped"  # a redelivered task does nothing
    clock.advance(86400)
    assert claim(runtime) == []
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert report.failed_unknown == 1
    event = load(runtime.sessions, event_id)
    assert event.status == "failed"
    assert "outcome unknown" in event.errors[-1]
    assert [a.call_status for a in event.attempts] == ["unknown"]
    clock.advance(86400)
    assert claim(runtime) == []
    assert route.call_count == 1


@respx.mock
def test_late_callback_after_timeout_settles_the_event(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=httpx.ReadTimeout("slow"))
    event_id = create(runtime, call_body(clock.now()))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    dispatch(runtime, attempt_id)
    texml_callback(runtime, attempt_id, "completed", 3, "12")
    assert load(runtime.sessions, event_id).status == "completed"


@pytest.mark.parametrize("status", [500, 502, 504])
@respx.mock
def test_a_server_error_after_sending_is_never_resent(runtime: Runtime, clock: FrozenClock, status: int) -> None:
    """A 5xx other than 503 came from a provider (or its gateway) that had the request: it may have placed the
    call, so it is an unknown outcome, never a refusal to try again (that dialed the person twice)."""
    route = respx.post(TEXML).mock(
        return_value=httpx.Response(status, json={"errors": [{"code": "10007", "title": "Unexpected error"}]})
    )
    event_id = create(runtime, call_body(clock.now(), max_retries_client_errors=3, retry_interval_secs=60))
    clock.advance(600)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "unknown"
    event = load(runtime.sessions, event_id)
    (attempt,) = event.attempts
    assert (event.status, event.retry_count, attempt.state) == ("in_progress", 0, "unknown")
    assert attempt.error and f"({status}, code 10007)" in attempt.error
    clock.advance(86400)
    assert claim(runtime) == []
    lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert load(runtime.sessions, event_id).status == "failed"
    assert claim(runtime) == []
    assert route.call_count == 1
