"""The scheduler on real PostgreSQL: racing schedulers, enqueue after commit, wake-ups."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy import func, insert, select

from campaigns import lifecycle
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.models import CallAttempt, ScheduledEvent
from tests.conftest import TEST_TELNYX_BASE_URL
from tests.factories import call_body, make_event
from worker import scheduler
from worker.runtime import Runtime


def _bulk_events(rt: Runtime, n: int) -> None:
    now = rt.clock.now()
    rows = [
        {
            "id": uuid.uuid4(),
            "assistant_id": "a1",
            "telnyx_conversation_channel": "phone_call",
            "telnyx_end_user_target": f"+1555{i:07d}",
            "telnyx_agent_target": "+15553456789",
            "scheduled_at_fixed_datetime": now - timedelta(seconds=i % 97),
            "status": "pending",
            "conversation_metadata": {},
            "dynamic_variables": {},
            "created_at": now,
            "updated_at": now,
            "errors": [],
            "max_retries_client_errors": 0,
            "retry_count": 0,
            "cancel_requested": False,
            "ruleset": "none",
        }
        for i in range(n)
    ]
    with unit_of_work(rt.sessions) as s:
        s.execute(insert(ScheduledEvent), rows)


def test_racing_schedulers_never_claim_an_event_twice(runtime: Runtime) -> None:
    """Four schedulers with their own connections claim 3,000 due events concurrently."""
    _bulk_events(runtime, 3000)
    rt = Runtime(
        settings=runtime.settings.model_copy(update={"claim_batch_size": 50}),
        clock=runtime.clock,
        sessions=runtime.sessions,
        providers=runtime.providers,
    )
    enqueued: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def enqueue(ids: list[str]) -> None:
        with lock:
            enqueued.extend(ids)

    def loop() -> None:
        start.wait()
        while scheduler.run_once(rt, enqueue) > 0:
            pass

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(enqueued) == len(set(enqueued)) == 3000
    with rt.sessions() as s:
        per_event = Counter(s.scalars(select(CallAttempt.event_id)).all())
        assert len(per_event) == 3000 and set(per_event.values()) == {1}
        assert s.scalar(select(func.count()).select_from(ScheduledEvent).where(ScheduledEvent.status == "pending")) == 0


def test_only_due_events_are_claimed_in_due_order(runtime: Runtime, clock: FrozenClock) -> None:
    now = clock.now()
    with unit_of_work(runtime.sessions) as s:
        late = make_event(s, now, scheduled_at_fixed_datetime=(now + timedelta(minutes=10)).isoformat()).id
        early = make_event(s, now, scheduled_at_fixed_datetime=(now + timedelta(minutes=1)).isoformat()).id
    claimed: list[str] = []
    assert scheduler.run_once(runtime, claimed.extend) == 0
    clock.advance(120)
    assert scheduler.run_once(runtime, claimed.extend) == 1
    clock.advance(3600)
    assert scheduler.run_once(runtime, claimed.extend) == 1
    with runtime.sessions() as s:
        order = [s.get(CallAttempt, uuid.UUID(a)).event_id for a in claimed]  # type: ignore[union-attr]
    assert order == [early, late]


def test_enqueue_failure_leaves_events_to_the_reconciler(runtime: Runtime, clock: FrozenClock) -> None:
    """Redis down after the claim committed: nothing is lost; the lease expires and the event returns."""
    with unit_of_work(runtime.sessions) as s:
        event_id = make_event(s, clock.now()).id
    clock.advance(600)

    def broken(_: list[str]) -> None:
        raise ConnectionError("redis is down")

    with pytest.raises(ConnectionError):
        scheduler.run_once(runtime, broken)
    clock.advance(3600)
    report = lifecycle.reconcile_expired_leases(
        runtime.sessions, now=clock.now(), providers=runtime.providers, call_lease=timedelta(hours=1)
    )
    assert report.withdrawn == 1
    claimed: list[str] = []
    assert scheduler.run_once(runtime, claimed.extend) == 1
    with runtime.sessions() as s:
        attempt = s.get(CallAttempt, uuid.UUID(claimed[0]))
        assert attempt is not None and attempt.event_id == event_id and attempt.attempt_number == 1


def test_sleep_is_capped_and_scaled_by_the_warp(runtime: Runtime, clock: FrozenClock) -> None:
    assert scheduler.seconds_until(runtime, None) == runtime.settings.scheduler_max_sleep_secs
    assert (
        scheduler.seconds_until(runtime, clock.now() + timedelta(hours=1)) == runtime.settings.scheduler_max_sleep_secs
    )
    assert scheduler.seconds_until(runtime, clock.now() + timedelta(milliseconds=300)) == 0.3
    assert scheduler.seconds_until(runtime, clock.now() - timedelta(seconds=5)) == 0.0


@respx.mock
def test_delete_in_progress_stops_further_attempts(runtime: Runtime, clock: FrozenClock) -> None:
    from campaigns import telephony, webhooks
    from campaigns.dispatch import dispatch_attempt
    from campaigns.events import cancel_event

    route = respx.post(f"{TEST_TELNYX_BASE_URL}/texml/ai_calls/texml-app-1").mock(
        return_value=httpx.Response(200, json={"call_sid": "v3:1"})
    )
    with unit_of_work(runtime.sessions) as s:
        event_id = make_event(
            s, clock.now(), call_body(clock.now(), max_retries_client_errors=3, retry_interval_secs=60)
        ).id
    clock.advance(600)
    claimed: list[str] = []
    scheduler.run_once(runtime, claimed.extend)
    attempt_id = uuid.UUID(claimed[0])
    dispatch_attempt(runtime.sessions, attempt_id, providers=runtime.providers, clock=clock, settings=runtime.settings)
    with unit_of_work(runtime.sessions) as s:
        event = s.get(ScheduledEvent, event_id)
        assert event is not None and event.status == "in_progress"
        cancel_event(s, event, now=clock.now())
    cb = telephony.parse_texml_status({"CallSid": "v3:1", "CallStatus": "busy", "SequenceNumber": "2"}, str(attempt_id))
    with unit_of_work(runtime.sessions) as s:
        webhooks.record_and_apply(s, cb, b"busy", now=clock.now())
    clock.advance(86400)
    assert scheduler.run_once(runtime, claimed.extend) == 0
    with runtime.sessions() as s:
        event = s.get(ScheduledEvent, event_id)
        assert event is not None
        assert event.status == "canceled" and event.retry_count == 0
        assert [a.call_status for a in event.attempts] == ["busy"]
    assert route.call_count == 1


def test_the_backlog_is_read_over_one_kept_connection(redis_url: str) -> None:
    import redis
    from celery import Celery

    from worker.scheduler import CeleryBacklog

    app = Celery("backlog-test", broker=redis_url)
    app.conf.task_default_queue = f"backlog-{uuid.uuid4()}"
    client = redis.Redis.from_url(redis_url)
    try:
        backlog = CeleryBacklog(app)
        assert backlog() == 0
        client.rpush(app.conf.task_default_queue, *[b"batch"] * 3)
        connection = backlog._connection
        assert backlog() == 3
        assert backlog._connection is connection  # not one connection per loop
        client.client_kill_filter(_id=connection.default_channel.client.client_id())  # the broker drops it
        assert backlog() in (0, 3)  # a dropped connection reads 0 (or kombu reconnects by itself) ...
        assert backlog() == 3  # ... and the next call reads through a working connection
        backlog.close()
        assert backlog._connection is None
    finally:
        client.delete(app.conf.task_default_queue)
        client.close()
