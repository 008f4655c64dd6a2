"""The account-wide call caps, the provider-wide backoff after a 429, and the breaker that holds a refused account
(campaigns/lifecycle/checks.py ``AccountPacingCheck`` / ``ProviderCheck``, campaigns/lifecycle/holds.py)."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta

import httpx
import pytest
import respx
from sqlalchemy import text

from campaigns import lifecycle
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.events.wire import serialize_telnyx_event
from campaigns.lifecycle import holds
from campaigns.lifecycle.checks import dial_budget
from campaigns.models import CallAttempt, ProviderBackoff, ProviderHold
from campaigns.settings import Settings
from tests.campaigns.lifecycle.harness import TEXML, create, dispatch, load, texml_ok
from tests.conftest import TEST_TELNYX_BASE_URL
from tests.factories import call_body
from worker.runtime import Runtime

BALANCE = f"{TEST_TELNYX_BASE_URL}/balance"
UNAUTHORIZED = httpx.Response(401, json={"errors": [{"code": "10009", "title": "Authentication failed"}]})


def due_in(clock: FrozenClock, seconds: float, to: str) -> dict[str, object]:
    at = (clock.now() + timedelta(seconds=seconds)).isoformat()
    return call_body(clock.now(), telnyx_end_user_target=to, scheduled_at_fixed_datetime=at)


def claim_with(rt: Runtime, settings: Settings) -> list[uuid.UUID]:
    with unit_of_work(rt.sessions) as s:
        claimed = lifecycle.claim_due_events(
            s,
            now=rt.clock.now(),
            limit=100,
            lease=timedelta(minutes=2),
            providers=rt.providers,
            checks=lifecycle.default_checks(settings),
        )
    return [c.attempt_id for c in claimed]


def capped(rt: Runtime, **caps: object) -> Settings:
    return rt.settings.model_copy(update=caps)


def test_dial_budget_never_exceeds_the_rate() -> None:
    assert dial_budget(30) == (150, 5.0)  # Telnyx: 30 x 5 = 150 in the trailing 5 s
    assert dial_budget(0.2) == (1, 5.0)
    assert dial_budget(0.1) == (1, 10.0)
    for rate in (0.05, 0.2, 0.3, 1, 2.5, 30):
        dials, window = dial_budget(rate)
        assert dials >= 1 and dials / window <= rate + 1e-9


def test_a_fifth_of_a_dial_per_second_is_one_dial_in_any_five_seconds(runtime: Runtime, clock: FrozenClock) -> None:
    settings = capped(runtime, max_dials_per_second=0.2)
    for n in range(6):
        create(runtime, due_in(clock, 1, f"+1555010{n:04d}"))
    clock.advance(1)
    claimed_at: list[datetime] = []
    for _ in range(60):  # 30 s in half-second steps, claiming at every step
        claimed_at += [clock.now() for _ in claim_with(runtime, settings)]
        clock.advance(0.5)
    assert len(claimed_at) == 6
    for first, second in itertools.pairwise(claimed_at):
        assert second - first >= timedelta(seconds=5)  # never two dials in any 5 s


def test_account_concurrency_counts_calls_of_every_campaign(runtime: Runtime, clock: FrozenClock) -> None:
    settings = capped(runtime, max_concurrent_calls=2)
    ids = [create(runtime, call_body(clock.now(), telnyx_end_user_target=f"+1555020{n:04d}")) for n in range(3)]
    clock.advance(600)
    assert len(claim_with(runtime, settings)) == 2
    third = next(i for i in ids if load(runtime.sessions, i).status == "pending")
    event = load(runtime.sessions, third)
    assert event.deferred_reason is not None and "2 calls in progress" in event.deferred_reason
    assert event.retry_count == 0 and event.attempts == []
    with unit_of_work(runtime.sessions) as s:  # one call ends: its channel is free again
        attempt = s.query(CallAttempt).first()
        assert attempt is not None
        attempt.state = "finished"
    clock.advance(2)
    assert len(claim_with(runtime, settings)) == 1


@respx.mock
def test_a_429_backs_the_whole_provider_off_increasingly(runtime: Runtime, clock: FrozenClock) -> None:
    refused = httpx.Response(429, json={"errors": [{"code": "90103", "title": "Too many dials per second"}]})
    respx.post(TEXML).mock(return_value=refused)
    for n in range(2):
        create(runtime, call_body(clock.now(), telnyx_end_user_target=f"+1555030{n:04d}"))
    clock.advance(600)
    first, second = claim_with(runtime, runtime.settings)
    assert dispatch(runtime, first) == "refused"
    assert dispatch(runtime, second) == "refused"  # the same burst: the wait is not doubled
    with unit_of_work(runtime.sessions) as s:
        row = s.get(ProviderBackoff, "texml")
        assert row is not None and row.level == 1
        assert row.not_before == clock.now() + timedelta(seconds=runtime.settings.provider_backoff_secs)
    other = create(runtime, due_in(clock, 0.5, "+15550309999"))
    clock.advance(0.6)
    assert claim_with(runtime, runtime.settings) == []  # an event never refused waits too: the provider backs off
    event = load(runtime.sessions, other)
    assert event.deferred_reason is not None and "backing off" in event.deferred_reason
    base, cap = timedelta(seconds=1), timedelta(seconds=60)
    with unit_of_work(runtime.sessions) as s:  # refused again right after the wait: twice as long, then capped
        clock.advance(1)
        assert holds.note_refusal(s, "texml", now=clock.now(), base=base, cap=cap) == clock.now() + 2 * base
        clock.advance(2)
        assert holds.note_refusal(s, "texml", now=clock.now(), base=base, cap=cap) == clock.now() + 4 * base
        clock.advance(3600)  # long after: from the start again
        assert holds.note_refusal(s, "texml", now=clock.now(), base=base, cap=cap) == clock.now() + base
    assert holds.backoff_delay(12, base=base, cap=cap) == cap


def test_a_refusal_during_a_running_wait_takes_no_lock(runtime: Runtime, clock: FrozenClock) -> None:
    """The webhook committers note a refusal for every batch with a D1 callback: while the wait runs, they must not
    queue on the provider's backoff row (another transaction holds it locked here; 100 ms lock timeout)."""
    base, cap = timedelta(seconds=30), timedelta(seconds=60)
    with unit_of_work(runtime.sessions) as s:
        until = holds.note_refusal(s, "texml", now=clock.now(), base=base, cap=cap, escalate=False)
    with runtime.sessions() as holder, runtime.sessions() as other:
        holder.execute(text("SELECT 1 FROM provider_backoffs WHERE provider = 'texml' FOR UPDATE"))
        other.execute(text("SET LOCAL lock_timeout = '100ms'"))
        clock.advance(5)
        assert holds.note_refusal(other, "texml", now=clock.now(), base=base, cap=cap, escalate=False) == until
        other.commit()
        holder.rollback()


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (UNAUTHORIZED, "api_key"),
        (httpx.Response(403, json={"errors": [{"code": "10010", "title": "Authorization failed"}]}), "api_key"),
        (httpx.Response(404, json={"errors": [{"code": "10005", "title": "Resource not found"}]}), "connection"),
    ],
)
@respx.mock
def test_an_account_refusal_holds_dispatch_and_fails_nothing(
    runtime: Runtime, clock: FrozenClock, response: httpx.Response, reason: str
) -> None:
    route = respx.post(TEXML).mock(return_value=response)
    ids = [create(runtime, call_body(clock.now(), telnyx_end_user_target="+15550400000"))]
    clock.advance(600)
    (first,) = claim_with(runtime, runtime.settings)
    assert dispatch(runtime, first) == "held"
    with runtime.sessions() as s:
        (hold,) = s.query(ProviderHold).all()
        assert (hold.provider, hold.reason) == ("texml", reason)
    ids += [create(runtime, due_in(clock, 0.5, f"+1555040{n:04d}")) for n in (1, 2)]
    clock.advance(1)
    assert claim_with(runtime, runtime.settings) == []  # the others wait as well, and the first
    for event_id in ids:
        event = load(runtime.sessions, event_id)
        assert (event.status, event.retry_count, event.errors) == ("pending", 0, [])
    assert route.call_count == 1
    refused = load(runtime.sessions, ids[0])  # the attempt that met the refusal stays on the record, for free
    ((attempt),) = refused.attempts
    assert (attempt.outcome, attempt.call_status, attempt.state, refused.free_attempts) == (
        "provider_rejected",
        None,
        "finished",
        1,
    )
    assert attempt.error is not None and attempt.error == refused.deferred_reason
    (wire,) = serialize_telnyx_event(refused)["call_attempts"]  # no call was created: "failed" in Telnyx's terms
    assert (wire["call_status"], wire["outcome"]) == ("failed", "provider_rejected")

    respx.get(BALANCE).mock(return_value=UNAUTHORIZED)
    respx.get(f"{TEST_TELNYX_BASE_URL}/texml_applications/texml-app-1").mock(return_value=response)
    clock.advance(runtime.settings.provider_probe_secs)
    (report,) = holds.probe_held(runtime.sessions, runtime.providers, clock=clock, settings=runtime.settings)
    assert not report.accepted
    assert holds.probe_held(runtime.sessions, runtime.providers, clock=clock, settings=runtime.settings) == []

    respx.get(BALANCE).mock(return_value=httpx.Response(200, json={"data": {"balance": "1.00"}}))
    respx.get(f"{TEST_TELNYX_BASE_URL}/texml_applications/texml-app-1").mock(
        return_value=httpx.Response(200, json={"data": {"id": "texml-app-1"}})
    )
    route.mock(side_effect=texml_ok)
    clock.advance(runtime.settings.provider_probe_secs)
    (report,) = holds.probe_held(runtime.sessions, runtime.providers, clock=clock, settings=runtime.settings)
    assert report.accepted
    assert len(claim_with(runtime, runtime.settings)) == 3  # due again, by themselves
    assert [a.attempt_number for a in load(runtime.sessions, ids[0]).attempts] == [1, 2]
    assert all(load(runtime.sessions, i).deferred_reason is None for i in ids)


@respx.mock
def test_a_rejected_key_at_start_opens_the_holds(runtime: Runtime, clock: FrozenClock) -> None:
    respx.get(BALANCE).mock(return_value=UNAUTHORIZED)
    line = holds.check_at_start(runtime.sessions, runtime.providers, clock=clock, settings=runtime.settings)
    assert line is not None and "provider rejected the API key (401)" in line and "CAMPAIGNS_TELNYX_API_KEY" in line
    event_id = create(runtime, call_body(clock.now()))
    clock.advance(600)
    assert claim_with(runtime, runtime.settings) == []
    assert load(runtime.sessions, event_id).deferred_reason == "provider rejected the API key (401)"
    respx.get(BALANCE).mock(return_value=httpx.Response(200, json={"data": {}}))
    assert holds.check_at_start(runtime.sessions, runtime.providers, clock=clock, settings=runtime.settings) is None
    with runtime.sessions() as s:
        assert holds.open_holds(s) == []


def test_a_recipient_error_is_not_an_account_hold() -> None:
    from campaigns.telephony.transport import account_hold

    recipient = httpx.Response(
        422, json={"errors": [{"code": "10016", "title": "Invalid destination", "source": {"pointer": "/to"}}]}
    )
    assert account_hold(recipient) is None
    blocked = httpx.Response(403, json={"errors": [{"code": "40300", "title": "Blocked due to STOP message"}]})
    assert account_hold(blocked) is None
    profile = httpx.Response(
        422,
        json={"errors": [{"code": "10017", "title": "Associated resource does not exist",
                          "source": {"pointer": "/messaging_profile_id"}}]},
    )  # fmt: skip
    held = account_hold(profile)
    assert held is not None and held.reason == "messaging_profile"
    connection = httpx.Response(
        422,
        json={"errors": [{"code": "10013", "title": "Missing association", "source": {"pointer": "/connection_id"}}]},
    )
    held = account_hold(connection)
    assert held is not None and held.reason == "connection"


def test_half_a_dial_per_second_on_the_account_measured_over_twenty_seconds(
    runtime: Runtime, clock: FrozenClock
) -> None:
    settings = capped(runtime, max_dials_per_second=0.5)
    for n in range(20):
        create(runtime, due_in(clock, 1, f"+1555020{n:04d}"))
    clock.advance(1)
    start, claimed = clock.now(), 0
    while clock.now() < start + timedelta(seconds=20):  # the injected clock, in quarter-second steps
        claimed += len(claim_with(runtime, settings))
        clock.advance(0.25)
    assert 0 < claimed <= 10  # never more than 0.5/s over the 20 s (two per trailing 5 s: 8)
