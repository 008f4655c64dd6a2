"""Claim-time checks: the calling window and pacing (campaigns/lifecycle/checks.py; frequency caps and the
do-not-contact list have files of their own)."""

from __future__ import annotations

import io
import itertools
from datetime import datetime, timedelta

import respx
from sqlalchemy import select

from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.lifecycle.checks import rate_budget
from campaigns.models import ScheduledEvent
from tests.campaigns.lifecycle.harness import (
    TEXML,
    claim,
    create,
    dispatch,
    load,
    texml_callback,
    texml_ok,
)
from tests.factories import call_body
from worker.runtime import Runtime


@respx.mock
def test_window_defers_the_claim_and_moves_a_late_retry_to_the_morning(runtime: Runtime, clock: FrozenClock) -> None:
    from datetime import UTC, datetime

    respx.post(TEXML).mock(side_effect=texml_ok)
    clock.set(datetime(2025, 7, 15, 10, 0, tzinfo=UTC))  # 06:00 in New York
    body = call_body(clock.now(), max_retries_client_errors=1, retry_interval_secs=3600, ruleset="us")
    body["telnyx_end_user_target"] = "+12125550101"
    event_id = create(runtime, body)
    clock.advance(600)
    assert claim(runtime) == []  # outside the window: deferred, no attempt
    event = load(runtime.sessions, event_id)
    assert event.status == "pending" and event.retry_count == 0
    assert event.scheduled_at_fixed_datetime == datetime(2025, 7, 15, 12, 0, tzinfo=UTC)  # 08:00 EDT
    assert event.deferred_reason and "calling window" in event.deferred_reason
    clock.set(datetime(2025, 7, 16, 0, 30, tzinfo=UTC))  # 20:30 EDT, still open
    (attempt_id,) = claim(runtime)
    dispatch(runtime, attempt_id)
    texml_callback(runtime, attempt_id, "busy", 2)  # retry at 21:30 would be after closing time
    event = load(runtime.sessions, event_id)
    assert event.status == "pending"
    assert event.scheduled_at_fixed_datetime == datetime(2025, 7, 16, 12, 0, tzinfo=UTC)  # next morning, 08:00 EDT


def paced_campaign(runtime: Runtime, clock: FrozenClock, numbers: int, **pacing: object) -> None:
    """A campaign without calling window, ``numbers`` numbers due now, with the pacing settings given."""
    from campaigns import campaign as campaign_service
    from campaigns import importing as importer

    settings = campaign_service.validate_settings(
        {"name": "paced", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none",
         **pacing},
        now=clock.now(),
    )  # fmt: skip
    data = "phone\n" + "".join(f"+1212555{n:04d}\n" for n in range(numbers))
    with unit_of_work(runtime.sessions) as s:
        campaign = campaign_service.create_campaign(s, settings, now=clock.now())
        importer.load_call_list(s, campaign, io.BytesIO(data.encode()), now=clock.now())


def test_pacing_limits_concurrency_and_rate_without_consuming_attempts(runtime: Runtime, clock: FrozenClock) -> None:
    paced_campaign(runtime, clock, 10, max_concurrent_calls=3)
    clock.advance(1)
    assert len(claim(runtime)) == 3
    assert claim(runtime) == []  # three calls are live: the rest wait, with no attempt created
    with runtime.sessions() as s:
        waiting = s.scalars(select(ScheduledEvent).where(ScheduledEvent.status == "pending")).all()
        assert len(waiting) == 7
        assert all(
            e.deferred_reason == "pacing: 3 concurrent calls in progress" and e.retry_count == 0 for e in waiting
        )


def test_rate_budget_never_exceeds_a_fractional_rate() -> None:
    assert rate_budget(0.2) == (1, 5.0)
    assert rate_budget(0.5) == (1, 2.0)
    assert rate_budget(1) == (1, 1.0)
    assert rate_budget(2.5) == (2, 1.0)
    for rate in (0.05, 0.2, 0.3, 0.5, 0.7, 1, 2.5, 30):
        dials, window = rate_budget(rate)
        assert dials >= 1 and dials / window <= rate + 1e-9


def test_a_half_dial_per_second_campaign_measured_over_twenty_seconds(runtime: Runtime, clock: FrozenClock) -> None:
    """Issue #19 item 4: 0.2/s configured dialed 1.00/s, since the rate was ``used >= rate`` over one second."""
    paced_campaign(runtime, clock, 30, max_dispatches_per_second=0.5)
    clock.advance(1)
    start = clock.now()
    claimed_at: list[datetime] = []
    while clock.now() < start + timedelta(seconds=20):  # 20 app seconds in quarter-second steps
        claimed_at += [clock.now() for _ in claim(runtime)]
        clock.advance(0.25)
    assert len(claimed_at) == 10  # 0.5/s over 20 s, not 20 (one a second) nor 30
    for first, second in itertools.pairwise(claimed_at):
        assert second - first >= timedelta(seconds=2)  # never two in any 2 s
