"""Group commit on real PostgreSQL: callers share a transaction, are answered after its commit, fail alone."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta

import pytest
import respx
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from campaigns import webhooks
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.group_commit import GroupCommit
from campaigns.models import CallAttempt, ScheduledEvent, WebhookReceipt
from tests.campaigns.test_lifecycle import TEXML, claim, create, dispatch, texml_ok
from tests.factories import call_body
from worker.runtime import Runtime

pytestmark = pytest.mark.db


def _txids(session: Session, items: Sequence[str]) -> list[int]:
    if "bad" in items:
        raise ValueError("a bad item")
    txid = int(session.execute(text("SELECT txid_current()")).scalar_one())
    return [txid] * len(items)


def _gated(gate: threading.Event, entered: threading.Event) -> Callable[[Session, Sequence[str]], list[int]]:
    """A committer whose first batch waits at ``gate``, so the next submissions pile up behind it."""

    def apply(session: Session, items: Sequence[str]) -> list[int]:
        if items == ["first"]:
            entered.set()
            assert gate.wait(30)
        return _txids(session, items)

    return apply


def test_waiting_callers_share_one_transaction(sessions: sessionmaker[Session]) -> None:
    gate, entered = threading.Event(), threading.Event()
    committer: GroupCommit[str, int] = GroupCommit(lambda: sessions, _gated(gate, entered), threads=1)
    first = committer.submit("first")
    assert entered.wait(30)
    waiting = [committer.submit(f"item-{i}") for i in range(10)]
    assert not any(f.done() for f in waiting)  # nobody is answered before the commit
    gate.set()
    shared = {f.result(30) for f in waiting}
    assert len(shared) == 1 and first.result(30) not in shared
    assert committer.batches == 1


def test_a_failing_item_fails_alone_and_the_rest_commit(sessions: sessionmaker[Session]) -> None:
    gate, entered = threading.Event(), threading.Event()
    committer: GroupCommit[str, int] = GroupCommit(lambda: sessions, _gated(gate, entered), threads=1)
    committer.submit("first")
    assert entered.wait(30)
    futures: list[Future[int]] = [committer.submit(name) for name in ("a", "bad", "b")]
    gate.set()
    with pytest.raises(ValueError, match="a bad item"):
        futures[1].result(30)
    a, b = futures[0].result(30), futures[2].result(30)
    assert a != b  # applied again one by one, each in its own transaction
    assert committer.batches == 0


def test_the_thread_goes_away_when_idle_and_comes_back(sessions: sessionmaker[Session]) -> None:
    committer: GroupCommit[str, int] = GroupCommit(lambda: sessions, _txids, idle_secs=0.05)
    assert committer.submit("one").result(30) > 0
    deadline = datetime.now() + timedelta(seconds=30)
    while committer.threads_running and datetime.now() < deadline:
        threading.Event().wait(0.01)
    assert committer.threads_running == 0
    assert committer.submit("two").result(30) > 0


@respx.mock
def test_callbacks_of_one_batch_apply_in_arrival_order_per_event(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    now = runtime.clock.now()
    events = [create(runtime, call_body(now, telnyx_end_user_target=f"+1555123456{i}")) for i in range(3)]
    clock.advance(300)
    attempts = claim(runtime)
    assert len(attempts) == 3
    for attempt_id in attempts:
        assert dispatch(runtime, attempt_id) == "sent"
    now = runtime.clock.now()

    def received(attempt_id: uuid.UUID, status: str, seq: int) -> webhooks.Received:
        form = {"CallSid": f"v3:{attempt_id}", "CallStatus": status, "SequenceNumber": str(seq), "CallDuration": "7"}
        return webhooks.Received(webhooks.parse_texml_status(form, str(attempt_id)), repr(form).encode(), now)

    # Reversed attempt order (locks are still taken in event id order), a duplicate, progress before outcome.
    batch = []
    for attempt_id in reversed(attempts):
        batch += [received(attempt_id, "ringing", 1), received(attempt_id, "in-progress", 2)]
        batch += [received(attempt_id, "completed", 3), received(attempt_id, "completed", 3)]
    with unit_of_work(runtime.sessions) as session:
        results = webhooks.record_and_apply_many(session, batch)
    assert results[2::4] == ["completed"] * 3 and results[3::4] == ["duplicate"] * 3
    with runtime.sessions() as session:
        statuses = session.scalars(select(ScheduledEvent.status).where(ScheduledEvent.id.in_(events))).all()
        assert statuses == ["completed"] * 3
        assert session.scalar(select(func.count()).select_from(WebhookReceipt)) == 9
        answered = session.scalars(select(CallAttempt.answered).where(CallAttempt.id.in_(attempts))).all()
        assert answered == [True] * 3
