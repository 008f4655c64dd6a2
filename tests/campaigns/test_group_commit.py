"""Group commit on real PostgreSQL: callers share a transaction, are answered after its commit, fail alone."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import Connection, Engine, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from campaigns import lifecycle, suppression, telephony, webhooks
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.group_commit import GroupCommit
from campaigns.models import CallAttempt, ScheduledEvent, WebhookReceipt
from campaigns.states import Channel
from tests.campaigns.lifecycle.harness import MESSAGES, TEXML, claim, create, dispatch, texml_ok
from tests.factories import call_body, sms_body
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


@pytest.mark.parametrize("names", [("gone", "b"), ("bad",)])
def test_a_caller_that_gave_up_does_not_stop_the_committer(
    sessions: sessionmaker[Session], names: tuple[str, ...]
) -> None:
    """A request cancelled while it waits cancels its future; answering it raised and killed the (only)
    committer thread, so its batch neighbours and every later item waited forever."""
    gate, entered = threading.Event(), threading.Event()
    committer: GroupCommit[str, int] = GroupCommit(lambda: sessions, _gated(gate, entered), threads=1)
    committer.submit("first")
    assert entered.wait(30)
    futures = [committer.submit(name) for name in names]
    assert futures[0].cancel()
    gate.set()
    for future in futures[1:]:
        assert future.result(30)
    assert committer.submit("later").result(30)


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
        return webhooks.Received(telephony.parse_texml_status(form, str(attempt_id)), repr(form).encode(), now)

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


def _texml(attempt_hint: object, sid: str, status: str, seq: int, now: datetime) -> webhooks.Received:
    form = {"CallSid": sid, "CallStatus": status, "SequenceNumber": str(seq), "CallDuration": "7"}
    return webhooks.Received(telephony.parse_texml_status(form, str(attempt_hint)), repr(form).encode(), now)


def _json(
    event_type: str, payload: dict[str, Any], now: datetime, *, hint: object = None, key: str | None = None
) -> webhooks.Received:
    body = {"data": {"event_type": event_type, "id": key or str(uuid.uuid4()), "payload": payload}}
    callback = telephony.parse_json_event(body, str(hint) if hint is not None else None)
    return webhooks.Received(callback, json.dumps(body).encode(), now)


def _snapshot(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    """Everything a callback can change, without the receipts' random ids."""
    return {
        table: [dict(row) for row in conn.execute(text(query)).mappings()]
        for table, query in (
            ("events", "SELECT * FROM scheduled_events ORDER BY id"),
            ("attempts", "SELECT * FROM call_attempts ORDER BY id"),
            ("suppressions", "SELECT * FROM suppressions ORDER BY phone"),
            (
                "receipts",
                "SELECT provider_key, kind, received_at, attempt_id, body, result FROM webhook_receipts"
                " ORDER BY provider_key",
            ),
        )
    }


def _reference_apply(session: Session, item: webhooks.Received) -> str:
    """One callback applied the way it was before batches were set-based: per-row statements, and the public
    state machine functions that lock the attempt's event themselves. The oracle for the batch."""
    cb, now = item.callback, item.now
    attempt_id = None
    if cb.attempt_id is not None:
        attempt_id = session.scalar(select(CallAttempt.id).where(CallAttempt.id == cb.attempt_id))
    if attempt_id is None and cb.provider_id:
        attempt_id = session.scalar(select(CallAttempt.id).where(CallAttempt.provider_id == cb.provider_id))
    receipt = session.execute(
        pg_insert(WebhookReceipt)
        .values(id=uuid.uuid4(), provider_key=cb.provider_key, kind=cb.kind, received_at=now,
                attempt_id=attempt_id, body=item.raw_body, result="received")
        .on_conflict_do_nothing(index_elements=["provider_key"])
        .returning(WebhookReceipt.id)
    ).scalar_one_or_none()  # fmt: skip
    if receipt is None:
        return "duplicate"
    if cb.kind == "message.received":
        result = suppression.apply_inbound_message(session, cb.counterpart, cb.text, now=now)
    else:
        if suppression.PROVIDER_BLOCK_CODE in cb.error_codes and cb.counterpart:
            detail = f"message {cb.status or 'failed'}: error {suppression.PROVIDER_BLOCK_CODE}"
            suppression.record_provider_block(session, cb.counterpart, detail, now=now)
        if attempt_id is None:
            result = "unmatched"
        elif cb.status is None:
            result = "ignored"
        elif cb.channel == Channel.SMS_CHAT:
            result = lifecycle.apply_sms_outcome(
                session, attempt_id, cb.status, now=now, provider_id=cb.provider_id
            ).reason
        elif not cb.terminal:
            result = "ignored"
            if cb.status in ("initiated", "ringing", "in-progress", "queued"):
                result = lifecycle.apply_progress(
                    session, attempt_id, cb.status, sequence=cb.sequence, answered=cb.answered, now=now
                ).reason
        else:
            status = cb.status
            if cb.kind == "call.hangup":
                answered = session.scalar(select(CallAttempt.answered).where(CallAttempt.id == attempt_id))
                status = "completed" if answered else telephony.HANGUP_TO_STATUS.get(status, "failed")
            result = lifecycle.apply_call_outcome(
                session, attempt_id, status, duration=cb.duration, now=now, sequence=cb.sequence,
                provider_id=cb.provider_id,
            ).reason  # fmt: skip
    session.execute(update(WebhookReceipt).where(WebhookReceipt.id == receipt).values(result=result[:64]))
    return result


def _one_at_a_time(engine: Engine, items: Sequence[webhooks.Received]) -> tuple[list[str], dict[str, Any]]:
    """Each item by ``_reference_apply`` in a transaction of its own (a savepoint), in arrival order; everything
    rolled back after."""
    with engine.connect() as conn:
        outer = conn.begin()
        results = []
        for item in items:
            with Session(bind=conn, join_transaction_mode="create_savepoint") as s:
                results.append(_reference_apply(s, item))
                s.commit()
        state = _snapshot(conn)
        outer.rollback()
    return results, state


@respx.mock
def test_a_mixed_batch_ends_as_one_callback_at_a_time_would(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    message_ids = iter(f"msg-{i}" for i in range(100))
    respx.post(MESSAGES).mock(
        side_effect=lambda _: httpx.Response(200, json={"data": {"id": next(message_ids), "to": []}})
    )
    start = runtime.clock.now()
    calls = [
        create(
            runtime,
            call_body(
                start, telnyx_end_user_target=f"+1555123450{i}", max_retries_client_errors=1, retry_interval_secs=60
            ),
        )
        for i in range(4)
    ]
    texts = [create(runtime, sms_body(start, telnyx_end_user_target=f"+1555123460{i}")) for i in range(2)]
    clock.advance(600)
    for attempt_id in claim(runtime):
        assert dispatch(runtime, attempt_id) == "sent"
    with runtime.sessions() as s:
        rows = s.execute(select(CallAttempt.event_id, CallAttempt.id, CallAttempt.provider_id)).all()
    attempt = {event_id: attempt_id for event_id, attempt_id, _ in rows}
    provider = {event_id: provider_id or "" for event_id, _, provider_id in rows}
    a, _, c, d = (attempt[event_id] for event_id in calls)
    e, f = texts
    now = clock.advance(20)
    already = _texml(d, provider[calls[3]], "initiated", 0, now)
    with unit_of_work(runtime.sessions) as s:
        assert webhooks.record_and_apply(s, already.callback, already.raw_body, now=now) == "progress"
    later = now + timedelta(seconds=5)
    state = base64.b64encode(str(d).encode()).decode()
    items = [
        _texml(a, provider[calls[0]], "ringing", 1, now),
        _json("call.answered", {"call_control_id": provider[calls[1]]}, now),  # provider id only
        _texml(a, provider[calls[0]], "in-progress", 2, now),
        _json(
            "call.hangup",
            {"call_control_id": provider[calls[1]], "hangup_cause": "unspecified", "call_duration": 33},
            later,
        ),
        _texml(c, provider[calls[2]], "busy", 3, later),  # a retry is scheduled
        _texml(c, provider[calls[2]], "busy", 3, later),  # the same key again in the batch
        already,  # stored before the batch
        _texml(a, provider[calls[0]], "completed", 3, later),
        _json(
            "call.hangup",
            # client_state names d; the call id must be d's too (one that differs never applies to d)
            {"call_control_id": provider[calls[3]], "client_state": state, "hangup_cause": "user_busy"},
            later,
        ),
        _json("call.hangup", {"call_control_id": "v3:nobody", "hangup_cause": "user_busy"}, later),  # unmatched
        _json("message.received", {"from": {"phone_number": "+12125550147"}, "text": "STOP"}, later),
        _json("message.sent", {"id": provider[e], "to": [{"status": "sent"}]}, later, hint=attempt[e]),
        _json("message.finalized", {"id": provider[e], "to": [{"status": "delivered"}]}, later),
        _json(
            "message.finalized",
            {
                "id": provider[f],
                "errors": [{"code": "40300"}],
                "to": [{"phone_number": "+15551234601", "status": "delivery_failed"}],
            },
            later,
            hint=attempt[f],
        ),
        _texml(a, provider[calls[0]], "initiated", 0, later),  # after the outcome: already finished
        _json("call.bridged", {"call_control_id": provider[calls[0]]}, later, hint=a),  # ignored
        _texml(uuid.uuid4(), "v3:nobody-either", "completed", 3, later),  # unmatched
    ]
    engine = runtime.sessions.kw["bind"]
    expected_results, expected_state = _one_at_a_time(engine, items)
    with unit_of_work(runtime.sessions) as s:
        results = webhooks.record_and_apply_many(s, items)
    with engine.connect() as conn:
        state_after = _snapshot(conn)
    assert results == expected_results
    assert results == [
        "progress",
        "progress",
        "progress",
        "completed",
        "busy",
        "duplicate",
        "duplicate",
        "completed",
        "busy",
        "unmatched",
        "opt-out: added",
        "progress",
        "delivered",
        "delivery_failed",
        "attempt already finished",
        "ignored",
        "unmatched",
    ]
    assert state_after == expected_state
    statuses = {row["id"]: row["status"] for row in state_after["events"]}
    assert [statuses[event_id] for event_id in [*calls, *texts]] == [
        "completed",
        "completed",
        "pending",
        "pending",
        "completed",
        "failed",
    ]
    assert {row["phone"]: row["reason"] for row in state_after["suppressions"]} == {
        "+12125550147": "sms_opt_out",
        "+15551234601": "provider_block",
    }


@respx.mock
def test_of_two_callbacks_with_one_provider_key_in_a_batch_the_first_wins(runtime: Runtime, clock: FrozenClock) -> None:
    respx.post(TEXML).mock(side_effect=texml_ok)
    event_id = create(runtime, call_body(runtime.clock.now()))
    clock.advance(300)
    (attempt_id,) = claim(runtime)
    assert dispatch(runtime, attempt_id) == "sent"
    now = runtime.clock.now()
    # The same CallSid, status and sequence (so the same provider key); only the second names a real attempt.
    first = _texml(uuid.uuid4(), "v3:not-ours", "completed", 3, now)
    second = _texml(attempt_id, "v3:not-ours", "completed", 3, now)
    with unit_of_work(runtime.sessions) as s:
        assert webhooks.record_and_apply_many(s, [first, second]) == ["unmatched", "duplicate"]
    with runtime.sessions() as s:
        assert s.scalar(select(ScheduledEvent.status).where(ScheduledEvent.id == event_id)) == "in_progress"
        receipt = s.scalars(select(WebhookReceipt)).one()
        assert (receipt.attempt_id, receipt.result) == (None, "unmatched")
