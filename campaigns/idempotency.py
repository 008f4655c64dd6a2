"""``Idempotency-Key`` on create requests: the first request with a key creates, every retry gets its answer.

The key, a hash of the request body and the answer are stored in ``idempotency_keys`` in the same transaction
as what the request creates, so a key is either spent on a committed resource or not spent at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from campaigns.errors import FieldError, IdempotencyKeyReused, ValidationFailed
from campaigns.models import IdempotencyKey

MAX_KEY_LENGTH: Final = 255
"""The ``idempotency_keys.key`` column."""
CREATED: Final = 201
"""The status stored with the answer: only creates take a key, and a replay answers as the create did."""


def request_hash(body: object) -> str:
    """The body's identity: the same JSON with its keys in another order is the same request."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_key(key: str) -> None:
    if len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed([FieldError("/Idempotency-Key", f"must be at most {MAX_KEY_LENGTH} characters")])


def create_once(
    session: Session,
    *,
    scope: str,
    key: str,
    body: object,
    now: datetime,
    create: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """``create()``'s answer, stored under (``scope``, ``key``); or the stored answer when the key was used before.

    A key used before with another body raises ``IdempotencyKeyReused``. Concurrent requests with one key wait
    on the first one's row lock and then read its answer, so exactly one of them creates.
    """
    check_key(key)
    digest = request_hash(body)
    inserted = session.execute(
        insert(IdempotencyKey)
        .values(scope=scope, key=key, request_hash=digest, response_status=0, response_body={}, created_at=now)
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    ).scalar_one_or_none()
    if inserted is None:
        stored = session.scalars(
            select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        ).one()
        if stored.request_hash != digest:
            raise IdempotencyKeyReused
        return stored.response_body
    # ``create`` runs only once the key is known to be new (if it raises, the key is rolled back with it): it may
    # validate against the time (``scheduled_at_fixed_datetime`` must be in the future), and a retry arriving after
    # that moment must still get the answer of what it created, not an error that invites creating it again.
    result = create()
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(response_status=CREATED, response_body=result)
    )
    return result
