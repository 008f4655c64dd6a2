"""Verified Telnyx callbacks: stored durably (unique on the provider's identity of each) and applied
idempotently, to the lifecycle (call and SMS outcomes) or to the do-not-contact list (inbound opt-outs,
provider blocks).

A domain module above both, so that neither the lifecycle nor the list knows about the other's callbacks.
Signature verification and parsing happen before any of this runs (``campaigns.telephony.signatures``,
``campaigns.telephony.callbacks``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from campaigns import lifecycle, suppression
from campaigns.lifecycle import outcomes
from campaigns.lifecycle.holds import RateBackoff
from campaigns.models import CallAttempt, ScheduledEvent
from campaigns.states import PROGRESS_CALL_STATUSES, CallStatus, Channel
from campaigns.telephony import hints
from campaigns.telephony.callbacks import Callback, hangup_call_status


def _moves_attempt(cb: Callback) -> bool:
    """Whether a matched callback goes to the state machine (and so needs its event locked) or is ignored.

    Non-terminal call statuses other than the progress ones (``PROGRESS_CALL_STATUSES``) are ignored."""
    if cb.kind == "message.received" or cb.status is None:
        return False
    if cb.status in (DETECTION, CONVERSATION):
        return True
    return cb.channel == Channel.SMS_CHAT or cb.terminal or cb.status in PROGRESS_CALL_STATUSES


DETECTION, CONVERSATION = "amd", "conversation"
"""The ``Callback.status`` of a detection result and of a conversation event (``telephony.callbacks``)."""


def _resolve_attempts(session: Session, callbacks: Sequence[Callback]) -> list[tuple[uuid.UUID, uuid.UUID] | None]:
    """The (attempt, event) each callback is about: the attempt it names, else the one with its provider id.

    A named attempt is believed only as :func:`hints.hint_applies` allows: never when its stored call or message
    id differs from the callback's (an unsigned ``?attempt_id=`` must not outrank a signed body, issue #19), and
    before that id is stored only when the hint is signed. Two queries for a whole batch: one for the named
    attempts (the usual case), one for the provider ids of the rest.
    """
    hinted = {cb.attempt_id for cb in callbacks if cb.attempt_id is not None}
    by_id: dict[uuid.UUID, tuple[uuid.UUID, str | None]] = {}
    if hinted:
        rows = session.execute(
            select(CallAttempt.id, CallAttempt.event_id, CallAttempt.provider_id).where(CallAttempt.id.in_(hinted))
        )
        by_id = {attempt_id: (event_id, provider_id) for attempt_id, event_id, provider_id in rows}

    def named(cb: Callback) -> tuple[uuid.UUID, uuid.UUID] | None:
        found = by_id.get(cb.attempt_id) if cb.attempt_id is not None else None
        if found is None or cb.attempt_id is None:
            return None
        if not hints.hint_applies(cb.attempt_hint_signed, cb.provider_id, found[1]):
            return None
        return cb.attempt_id, found[0]

    believed = [named(cb) for cb in callbacks]
    provider_ids = {cb.provider_id for cb, pair in zip(callbacks, believed, strict=True) if cb.provider_id and not pair}
    by_provider_id: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}
    if provider_ids:
        rows_by_provider = session.execute(
            select(CallAttempt.id, CallAttempt.event_id, CallAttempt.provider_id).where(
                CallAttempt.provider_id.in_(provider_ids)
            )
        )
        for attempt_id, event_id, provider_id in rows_by_provider:
            if provider_id is not None:
                by_provider_id.setdefault(provider_id, (attempt_id, event_id))
    resolved: list[tuple[uuid.UUID, uuid.UUID] | None] = []
    for cb, pair in zip(callbacks, believed, strict=True):
        if pair is not None:
            resolved.append(pair)
        else:
            resolved.append(by_provider_id.get(cb.provider_id) if cb.provider_id else None)
    return resolved


def record_and_apply(
    session: Session, callback: Callback, raw_body: bytes, *, now: datetime, backoff: RateBackoff | None = None
) -> str:
    """Store the receipt (a duplicate stops here) and apply it. Returns what happened, for logs and metrics."""
    return record_and_apply_many(session, [Received(callback, raw_body, now)], backoff=backoff)[0]


@dataclass(frozen=True)
class Received:
    """A verified callback waiting to be applied, with the moment it arrived."""

    callback: Callback
    raw_body: bytes
    now: datetime


def record_and_apply_many(
    session: Session, items: Sequence[Received], *, backoff: RateBackoff | None = None
) -> list[str]:
    """``record_and_apply`` for a batch in one transaction (group commit); results in the order of ``items``.

    Set-based where the outcome allows it: the attempts are resolved with one or two queries, the receipts are
    inserted with one statement (a duplicate stops there; of two items with the same provider key in the batch
    the first one wins), the events of the rest are locked with one statement in id order, as the dispatch batch
    locks them, so a batch of callbacks and a batch of dispatches can never deadlock, and the results are stored
    with one statement. The state machine then runs per callback on the locked objects (the session's identity
    map carries one callback's changes to the next), in event id order and, for the same event, in arrival
    order, as one callback at a time would; the batch flushes once. As before, attempts are resolved once, up
    front: a callback matched only by a provider id that an earlier callback of the same batch stores is
    unmatched.

    A call refused for the account's channel limit (the D1 403, ``Callback.channel_limited``) is the provider
    saying "too many at once", as a 429 is: with ``backoff`` given, the whole call provider backs off
    (``holds.note_refusal``), not only the refused event (DESIGN.md §2.3).
    """
    resolved = _resolve_attempts(session, [item.callback for item in items])
    receipts = _insert_receipts(session, items, resolved)
    fresh = [i for i, receipt in enumerate(receipts) if receipt is not None]
    locked = lifecycle.lock_attempts(
        session,
        {pair[0]: pair[1] for i in fresh if (pair := resolved[i]) is not None and _moves_attempt(items[i].callback)},
    )

    def lock_order(i: int) -> tuple[int, uuid.UUID]:
        pair = resolved[i]
        return (0, pair[1]) if pair is not None else (1, uuid.UUID(int=0))

    results = ["duplicate"] * len(items)
    for i in sorted(fresh, key=lock_order):
        pair = resolved[i]
        item = items[i]
        results[i] = _apply(
            session,
            item.callback,
            pair[0] if pair is not None else None,
            locked.get(pair[0]) if pair is not None else None,
            now=item.now,
        )
    limited = [items[i].now for i in fresh if items[i].callback.channel_limited and items[i].callback.terminal]
    if backoff is not None and limited:
        backoff.note(session, now=max(limited))
    session.flush()
    _store_results(session, [(receipt, results[i][:64]) for i, receipt in enumerate(receipts) if receipt is not None])
    return results


# Set-based statements over arrays: one statement (and one plan, prepared by psycopg) whatever the batch size.
_INSERT_RECEIPTS = text(
    """
    INSERT INTO webhook_receipts (id, provider_key, kind, received_at, attempt_id, body, result)
    SELECT r.id, r.provider_key, r.kind, r.received_at, r.attempt_id, r.body, 'received'
    FROM unnest(CAST(:id AS uuid[]), CAST(:provider_key AS text[]), CAST(:kind AS text[]),
                CAST(:received_at AS timestamptz[]), CAST(:attempt_id AS uuid[]), CAST(:body AS bytea[]))
        AS r(id, provider_key, kind, received_at, attempt_id, body)
    ON CONFLICT (provider_key) DO NOTHING
    RETURNING provider_key
    """
)
_STORE_RESULTS = text(
    """
    UPDATE webhook_receipts AS r SET result = v.result
    FROM unnest(CAST(:ids AS uuid[]), CAST(:results AS text[])) AS v(id, result)
    WHERE r.id = v.id
    """
)


def _insert_receipts(
    session: Session, items: Sequence[Received], resolved: Sequence[tuple[uuid.UUID, uuid.UUID] | None]
) -> list[uuid.UUID | None]:
    """Insert a receipt per item, unless its provider key is already stored (or earlier in the batch).

    Returns each item's receipt id, ``None`` for a duplicate. The rows go in provider key order, so two batches
    waiting on each other's uncommitted duplicates always wait in the same direction.
    """
    first: dict[str, int] = {}  # provider key → the index of the first item with it
    for i, item in enumerate(items):
        first.setdefault(item.callback.provider_key, i)
    keys = sorted(first)
    receipt_of = {key: uuid.uuid4() for key in keys}
    inserted = set(
        session.scalars(
            _INSERT_RECEIPTS,
            {
                "id": [receipt_of[key] for key in keys],
                "provider_key": keys,
                "kind": [items[first[key]].callback.kind for key in keys],
                "received_at": [items[first[key]].now for key in keys],
                "attempt_id": [pair[0] if (pair := resolved[first[key]]) is not None else None for key in keys],
                "body": [items[first[key]].raw_body for key in keys],
            },
        )
    )
    return [
        receipt_of[key] if first[key] == i and key in inserted else None
        for i, key in enumerate(item.callback.provider_key for item in items)
    ]


def _store_results(session: Session, results: Sequence[tuple[uuid.UUID, str]]) -> None:
    """Set each new receipt's result with one statement."""
    if not results:
        return
    session.execute(_STORE_RESULTS, {"ids": [receipt for receipt, _ in results], "results": [r for _, r in results]})


def _apply(
    session: Session,
    cb: Callback,
    attempt_id: uuid.UUID | None,
    locked: tuple[CallAttempt, ScheduledEvent] | None,
    *,
    now: datetime,
) -> str:
    """One callback, its event already locked (``locked`` is ``None`` when its attempt was withdrawn meanwhile)."""
    if cb.kind == "message.received":
        return suppression.apply_inbound_message(session, cb.counterpart, cb.text, now=now)
    if suppression.PROVIDER_BLOCK_CODE in cb.error_codes and cb.counterpart:
        suppression.record_provider_block(
            session,
            cb.counterpart,
            f"message {cb.status or 'failed'}: error {suppression.PROVIDER_BLOCK_CODE}",
            now=now,
        )
    if attempt_id is None:
        return "unmatched"
    if cb.status is None or not _moves_attempt(cb):
        return "ignored"
    if locked is None:
        return "unknown attempt"
    attempt, event = locked
    if cb.channel == Channel.SMS_CHAT:
        return lifecycle.apply_sms_outcome_locked(attempt, event, cb.status, now=now, provider_id=cb.provider_id).reason
    if cb.status == DETECTION and cb.answered_by is not None:
        return outcomes.record_detection_locked(session, attempt, event, cb.answered_by, now=now).reason
    if cb.status == CONVERSATION:
        return outcomes.record_conversation_locked(
            attempt, event, conversation_id=cb.conversation_id, insights=cb.insights
        ).reason
    if cb.conversation_id:
        outcomes.record_conversation_locked(attempt, event, conversation_id=cb.conversation_id, insights=None)
    if not cb.terminal:
        return lifecycle.apply_progress_locked(
            attempt,
            event,
            cb.status,
            sequence=cb.sequence,
            answered=cb.answered,
            now=now,
            provider_id=cb.provider_id,
            answered_by=cb.answered_by,
        ).reason
    status, duration = cb.status, cb.duration
    if cb.kind == "call.hangup":
        status = hangup_call_status(cb.status, answered=attempt.answered)
        if duration is None and status == CallStatus.COMPLETED:
            duration = cb.elapsed  # Call Control reports no duration: the answered call's span is its length
    return lifecycle.apply_call_outcome_locked(
        session,
        attempt,
        event,
        status,
        duration=duration,
        now=now,
        sequence=cb.sequence,
        provider_id=cb.provider_id,
        answered_by=cb.answered_by,
        channel_limited=cb.channel_limited,
    ).reason


PURGE_BATCH = 5000

_ERASE_OLD_BODIES = text(
    """
    UPDATE webhook_receipts SET body = ''::bytea
    WHERE id IN (SELECT id FROM webhook_receipts WHERE received_at < :cutoff AND length(body) > 0 LIMIT :batch)
    """
)


def purge_receipt_bodies(session: Session, *, now: datetime, retention: timedelta, batch: int = PURGE_BATCH) -> int:
    """Erase the raw bodies of receipts received before ``now - retention``: they hold phone numbers and SMS text
    (issue 19 item 14). The rows stay, with their provider key, kind, time and result: the key is all that
    recognizing a redelivery as a duplicate needs. At most ``batch`` rows per call; the count erased."""
    erased = session.execute(_ERASE_OLD_BODIES, {"cutoff": now - retention, "batch": batch})
    return int(getattr(erased, "rowcount", 0) or 0)
