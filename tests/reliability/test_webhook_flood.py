"""A webhook flood: every genuine callback of many calls, duplicated, shuffled, with 10% forgeries mixed in.

Forgeries: a terminal status with the opposite outcome signed by another key, a genuine body altered after
signing, no signature, and a genuine callback replayed outside the 300 s tolerance. Every forgery must be
refused (401) and change nothing; the state must be exactly what the genuine callbacks say, one receipt each.
CI: 200 calls; ``CHAOS_FULL=1``: 2,000.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlencode

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from bench import harness
from campaigns.clock import FrozenClock
from campaigns.settings import Settings
from campaigns.telephony.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, public_key_b64, sign
from tests.reliability.stack import FULL
from worker.api import create_app
from worker.runtime import Runtime

pytestmark = pytest.mark.db

CALLS = 2000 if FULL else 200
PATH = "/webhooks/telnyx/call-status"


@dataclass(frozen=True)
class Message:
    attempt_id: str
    body: bytes
    key: Ed25519PrivateKey | None
    age: int = 0
    signed_body: bytes | None = None
    forged: str = ""


def form(sid: str, status: str, seq: int) -> bytes:
    fields = {"CallSid": sid, "CallStatus": status, "SequenceNumber": str(seq), "To": "+12120000000",
              "From": "+15553456789", "AccountSid": "acct"}  # fmt: skip
    if status in ("completed", "busy", "no-answer"):
        fields["CallDuration"] = "42" if status == "completed" else "0"
    return urlencode(fields).encode()


def test_webhook_flood(
    database_url: str, sessions: sessionmaker[Session], settings: Settings, clock: FrozenClock
) -> None:
    rng = random.Random(7)
    key, other_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with psycopg.connect(harness.dsn(database_url)) as conn:
        rows = harness.seed_sent_attempts(conn, CALLS, "flood")
    expected: dict[str, str] = {}
    genuine: list[Message] = []
    for attempt_id, event_id, sid in rows:
        outcome = rng.choice(["completed", "completed", "busy", "no-answer"])
        expected[event_id] = outcome
        sequence = ["initiated", "ringing"] + (["in-progress", "completed"] if outcome == "completed" else [outcome])
        genuine += [Message(attempt_id, form(sid, status, seq), key) for seq, status in enumerate(sequence)]
    flood = list(genuine)
    flood += [m for m in genuine if rng.random() < 0.3 for _ in range(rng.randint(1, 3))]  # duplicates
    forged: list[Message] = []
    while len(forged) < len(flood) // 9:  # 10% of the final flood
        victim = rng.choice(genuine)
        sid = victim.body.decode().split("CallSid=")[1].split("&")[0]
        kind = rng.choice(["other key", "altered body", "unsigned", "replayed"])
        if kind == "other key":
            forged.append(Message(victim.attempt_id, form(sid, "completed", 9), other_key, forged=kind))
        elif kind == "altered body":
            altered = victim.body.replace(b"CallStatus=", b"CallStatus=x")
            forged.append(Message(victim.attempt_id, altered, key, signed_body=victim.body, forged=kind))
        elif kind == "unsigned":
            forged.append(Message(victim.attempt_id, form(sid, "completed", 9), None, forged=kind))
        else:
            forged.append(Message(victim.attempt_id, form(sid, "completed", 9), key, age=900, forged=kind))
    flood += forged
    rng.shuffle(flood)

    rt = Runtime(
        settings=settings.model_copy(update={"telnyx_public_key": public_key_b64(key)}),
        clock=clock,
        sessions=sessions,
        providers=None,
    )  # type: ignore[arg-type]  # webhooks never call the provider
    client = TestClient(create_app(rt))

    def post(message: Message) -> tuple[Message, int]:
        headers = {"content-type": "application/x-www-form-urlencoded"}
        if message.key is not None:
            timestamp = str(int(time.time()) - message.age)
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(message.key, timestamp, message.signed_body or message.body)
        response = client.post(f"{PATH}?attempt_id={message.attempt_id}", content=message.body, headers=headers)
        return message, response.status_code

    with client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, flood))
    wrong = [(m.forged or "genuine", code) for m, code in answers if (code == 401) != bool(m.forged)]
    assert not wrong, f"answers that do not match the message: {wrong[:10]}"

    with psycopg.connect(harness.dsn(database_url)) as conn:
        events = dict(conn.execute("SELECT id::text, status || ':' || coalesce(call_status, '') "
                                   "FROM scheduled_events").fetchall())  # fmt: skip
        attempts = dict(conn.execute("SELECT event_id::text, call_status FROM call_attempts").fetchall())
        receipts = conn.execute("SELECT count(*), count(DISTINCT provider_key) FROM webhook_receipts").fetchone()
    for event_id, outcome in expected.items():
        status = "completed" if outcome == "completed" else "failed"
        assert events[event_id] == f"{status}:{outcome}", (event_id, events[event_id], outcome)
        assert attempts[event_id] == outcome
    assert receipts == (len(genuine), len(genuine))
    kinds = {k: sum(1 for m in forged if m.forged == k) for k in ("other key", "altered body", "unsigned", "replayed")}
    print(f"\nwebhook flood: {len(flood)} posts = {len(genuine)} genuine + {len(flood) - len(genuine) - len(forged)} "
          f"duplicates + {len(forged)} forged {kinds}; all forged refused (401), {len(genuine)} receipts, "
          f"{len(expected)} events exactly as the genuine callbacks say")  # fmt: skip
