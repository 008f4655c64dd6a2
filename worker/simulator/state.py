"""Everything the simulator remembers: the requests received, the script being played, the calls placed, the
answers kept for repeated ``command_id`` / ``Idempotency-Key``, the block rules.

Synchronous on purpose: the server runs on one event loop and no method here awaits, so a read-modify-write of
this state cannot interleave with another request's.
"""

from __future__ import annotations

import json
import random
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from campaigns.clock import iso, utcnow_real
from campaigns.states import CallStatus
from worker.simulator.config import Script, SimulatorConfig, validate_mix


def now_iso() -> str:
    """Real time as Telnyx writes it (UTC, ``Z``): the simulator is never warped."""
    return iso(utcnow_real()) or ""  # iso() returns None only for None


@dataclass
class Accepted:
    """A placed call or message, kept so a repeated command_id / Idempotency-Key gets the same answer."""

    body: dict[str, Any]
    outcome: str
    provider_id: str
    at: float = field(default_factory=time.monotonic)
    """When it was first accepted (a repeated ``command_id`` is ignored only within ``COMMAND_ID_WINDOW_SECS``)."""


COMMAND_ID_WINDOW_SECS = 60.0
"""Telnyx: "Commands with duplicate command_ids within 60 seconds will be ignored"
(developers.telnyx.com/docs/voice/programmable-voice/receiving-webhooks). Later, the same command_id is a new
command: the simulator places a second call, as Telnyx would."""


@dataclass
class Call:
    call_control_id: str
    call_leg_id: str
    call_session_id: str
    connection_id: str
    from_: str
    to: str
    started_at: datetime
    is_alive: bool = True
    call_duration: int | None = None
    status: str | None = None
    """The terminal status once the call is over."""
    conversation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    """The conversation an answered call has with the assistant (``call.conversation.ended``)."""

    def hang_up(self, status: str, completed_duration_secs: int) -> None:
        self.is_alive = False
        self.status = status
        self.call_duration = completed_duration_secs if status == CallStatus.COMPLETED else 0


def _provider_id() -> str:
    return "v3:" + secrets.token_urlsafe(24)


def _attempt_id(url: str | None) -> str | None:
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("attempt_id")
    # The hint is "<attempt id>.<mac>" (campaigns.telephony.hints); the request log names the attempt alone.
    return values[0].partition(".")[0] if values else None


class SimulatorState:
    """All in-memory state of one simulator app. Raises ``ValueError`` for a bad ``mix`` in the config."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config_mix = validate_mix(config.mix) if config.mix is not None else None
        self.rng = random.Random(config.seed)
        self.calls_log: list[dict[str, Any]] = []
        self.messages_log: list[dict[str, Any]] = []
        self.script = Script()
        self.dials_by_command_id: dict[str, Accepted] = {}
        self.messages_by_key: dict[str, Accepted] = {}
        self.calls: dict[str, Call] = {}
        self.blocked: set[str] = set()
        """Numbers that opted out of messages (Telnyx block rules)."""
        self.queries: Counter[str] = Counter()
        """Status questions asked (``call_status``: ``GET /v2/calls/{id}``; ``call_list``: the TeXML call list;
        ``detail_records``: the message detail records search)."""

    def record(
        self, kind_log: list[dict[str, Any]], path: str, idempotency_key: str | None, raw: bytes
    ) -> dict[str, Any]:
        """Append a log entry for a received request; handlers fill in the outcome later."""
        try:
            parsed: Any = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = raw.decode(errors="replace")
        body = parsed if isinstance(parsed, dict) else {}

        def text(*keys: str) -> str | None:
            for key in keys:
                if isinstance(body.get(key), str):
                    return str(body[key])
            return None

        entry: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "received_at": now_iso(),
            "path": path,
            "to": text("To", "to"),
            "from": text("From", "from"),
            "body": parsed,
            "headers": {"idempotency-key": idempotency_key},
            "command_id": text("command_id"),
            "attempt_id": _attempt_id(text("StatusCallback", "webhook_url")),
            "outcome": None,
            "duplicate": False,
            "provider_id": None,
            "status_code": None,
        }
        kind_log.append(entry)
        return entry

    def next_outcome(self, to: str) -> str:
        """Pop the destination's next scripted outcome, else the script default, else the mix."""
        queue = self.script.targets.get(to)
        if queue:
            return queue.popleft()
        if self.script.default is not None:
            return self.script.default
        mix = self.script.mix or self.config_mix
        if mix:
            names = list(mix)
            return self.rng.choices(names, weights=[mix[name] for name in names])[0]
        return CallStatus.COMPLETED

    def new_call(self, connection_id: str, from_: str, to: str) -> Call:
        call = Call(
            call_control_id=_provider_id(),
            call_leg_id=str(uuid.uuid4()),
            call_session_id=str(uuid.uuid4()),
            connection_id=connection_id,
            from_=from_,
            to=to,
            started_at=utcnow_real(),
        )
        self.calls[call.call_control_id] = call
        return call

    def reset(self) -> None:
        """Forget logs, script, dedupe tables, calls and block rules."""
        self.calls_log.clear()
        self.messages_log.clear()
        self.script = Script()
        self.dials_by_command_id.clear()
        self.messages_by_key.clear()
        self.calls.clear()
        self.blocked.clear()
        self.queries.clear()
