"""The simulator's knobs, its outcome names, the random mix and the outcome script (``POST /_simulator/script``).

An outcome is what the simulated provider does with one call or message: a Telnyx status it ends in, or a
provider error. A call outcome given to a message, or the reverse, is translated (``call_status``,
``message_status``).
"""

from __future__ import annotations

import binascii
import math
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from campaigns.states import TERMINAL_CALL_STATUSES, CallStatus, MessageStatus
from campaigns.telephony.signatures import private_key_from_b64

PRIVATE_KEY_ENV = "CAMPAIGNS_SIMULATOR_PRIVATE_KEY"

ANSWERED_BY_OUTCOMES: Final = frozenset({"machine", "screened", "fax"})
"""Calls answered by voicemail, by a phone's call-screening assistant, by a fax machine: ``completed`` on the
network; only answering-machine detection, where the request asked for it, tells them apart."""
CALL_OUTCOMES: Final = TERMINAL_CALL_STATUSES | ANSWERED_BY_OUTCOMES
"""Every terminal status Telnyx reports for a call, and who may have answered it."""
MESSAGE_OUTCOMES: Final = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERY_FAILED,
        MessageStatus.SENDING_FAILED,
        MessageStatus.EXPIRED,
        MessageStatus.DELIVERY_UNCONFIRMED,
    }
)
"""Final ``to[].status`` values (Telnyx's: the official SDK's ``telnyx/types/outbound_message_payload.py``)."""
ERROR_OUTCOMES: Final = frozenset({"http_401", "http_403", "http_422", "http_429", "http_500", "http_503", "timeout"})
CHANNEL_LIMIT: Final = "channel_limit"
"""The account's channel limit: the POST is accepted, then the call fails with SIP 403 "User channel limit
exceeded" (D1), as Telnyx reports it."""
COMPLETED_LATE: Final = "completed_late"
"""A call answered and ended like ``completed`` (a status query reports it over: ``is_alive`` false), whose
terminal status callback (TeXML ``completed``, Call Control ``call.hangup``) and ``call.conversation.ended`` are
held back for ``late_callback_delay`` seconds: with a short call lease, the engine's reconciler closes the
attempt as unknown first, and the late result must then complete the event (late truth wins). A message given
it is delivered as usual."""
ACCOUNT_REJECTIONS: Final = frozenset({"http_401", "http_403"})
"""As the script's ``default``, the whole account is refused: every authenticated request answers it."""
OUTCOMES: Final = CALL_OUTCOMES | MESSAGE_OUTCOMES | ERROR_OUTCOMES | {CHANNEL_LIMIT, COMPLETED_LATE}


@dataclass
class SimulatorConfig:
    """Knobs of the simulator. Delays are real seconds; reported durations are simulated seconds."""

    ring_delay: float = 0.2
    """Real seconds between ``initiated``/``ringing`` and the outcome."""
    talk_delay: float = 0.5
    """Real seconds an answered call lasts before its ``completed`` callback."""
    call_duration_secs: int = 42
    """``CallDuration`` / ``call_duration`` reported for a completed call."""
    mix: dict[str, float] | None = None
    """Random outcome weights for destinations without a scripted outcome (no script default either)."""
    seed: int | None = None
    """Seeds the outcome draws from ``mix`` only; ids are always random so runs never reuse them."""
    private_key_b64: str | None = None
    """Base64 32-byte Ed25519 seed; ``None`` reads ``CAMPAIGNS_SIMULATOR_PRIVATE_KEY``, else one is generated."""
    response_delay_on_timeout: float = 30.0
    """Real seconds the HTTP answer is held back for the ``timeout`` outcome."""
    late_callback_delay: float = 5.0
    """Real seconds the terminal callback of a ``completed_late`` call is held back after the call ended."""
    webhook_retries: int = 3
    """Delivery tries per callback (like Telnyx's "up to 3 times per URL"), on connection errors or non-2xx."""
    callbacks: bool = True
    """Send status callbacks and webhooks at all; off for load tests that measure dispatch alone."""
    callback_lanes: int = 128
    """Callbacks in flight at once (each on its own single-connection client, a "lane"); more wait for a free one.
    Telnyx sets no such limit that the engine could see; 128 keeps the simulator from being the bottleneck."""
    list_delay: float = 0.0
    """Real seconds before a placed call shows in ``GET /texml/Accounts/{account_sid}/Calls`` (and an accepted
    message in ``GET /detail_records``): Telnyx calls that list "eventually consistent", so a lookup right after a
    request may not see its call yet."""


def parse_mix(text: str) -> dict[str, float]:
    """Parse ``"completed=0.6,busy=0.2,no-answer=0.2"`` into outcome weights.

    Raises ``ValueError`` naming the offending part: a malformed item, a bad weight, an unknown or repeated
    outcome, or weights that are all zero.
    """
    if not text.strip():
        raise ValueError("mix is empty: expected e.g. 'completed=0.6,busy=0.2,no-answer=0.2'")
    weights: dict[str, float] = {}
    for number, item in enumerate(text.split(","), start=1):
        name, sep, raw_weight = item.strip().partition("=")
        name, raw_weight = name.strip(), raw_weight.strip()
        if not sep or not name or not raw_weight:
            raise ValueError(f"mix item {number} {item.strip()!r} is not of the form outcome=weight")
        try:
            weight = float(raw_weight)
        except ValueError:
            raise ValueError(f"mix item {item.strip()!r}: weight {raw_weight!r} is not a number") from None
        if name in weights:
            raise ValueError(f"mix item {item.strip()!r}: outcome {name!r} appears twice")
        weights[name] = weight
    return validate_mix(weights)


def validate_mix(weights: Mapping[str, object]) -> dict[str, float]:
    """Check outcome names and weights; return a plain ``dict[str, float]``."""
    if not weights:
        raise ValueError("mix is empty")
    checked: dict[str, float] = {}
    for name, weight in weights.items():
        if name not in OUTCOMES:
            raise ValueError(f"mix: unknown outcome {name!r} (valid: {', '.join(sorted(OUTCOMES))})")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"mix: weight of {name!r} is not a number: {weight!r}")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"mix: weight of {name!r} must be a finite number >= 0, got {weight!r}")
        checked[name] = float(weight)
    if sum(checked.values()) <= 0:
        raise ValueError("mix: the weights must not all be zero")
    return checked


def load_private_key(seed_b64: str | None) -> Ed25519PrivateKey:
    """The signing key: the configured seed, else the environment's, else a fresh one."""
    source = "private_key_b64"
    if seed_b64 is None:
        seed_b64, source = os.environ.get(PRIVATE_KEY_ENV) or None, PRIVATE_KEY_ENV
    if seed_b64 is None:
        return Ed25519PrivateKey.generate()
    try:
        return private_key_from_b64(seed_b64)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{source} is not a base64 32-byte Ed25519 seed") from exc


def call_status(outcome: str) -> CallStatus:
    """The call status an outcome produces (``timeout``, ``http_500`` and ``completed_late`` still complete the
    call; so does a machine's answer)."""
    if outcome in ANSWERED_BY_OUTCOMES:
        return CallStatus.COMPLETED
    if outcome in CALL_OUTCOMES:
        return CallStatus(outcome)
    if outcome in (MessageStatus.DELIVERY_FAILED, MessageStatus.SENDING_FAILED, MessageStatus.EXPIRED, CHANNEL_LIMIT):
        return CallStatus.FAILED
    return CallStatus.COMPLETED


def message_status(outcome: str) -> MessageStatus:
    """The final ``to[0].status`` an outcome produces (``timeout``, ``http_500`` and ``completed_late`` still
    deliver the message)."""
    if outcome in MESSAGE_OUTCOMES:
        return MessageStatus(outcome)
    if outcome in (CallStatus.BUSY, CallStatus.NO_ANSWER):
        return MessageStatus.DELIVERY_FAILED
    if outcome in (CallStatus.FAILED, CallStatus.CANCELED, CHANNEL_LIMIT):
        return MessageStatus.SENDING_FAILED
    return MessageStatus.DELIVERED


@dataclass
class Script:
    """The outcome script: a queue of outcomes per destination, then the default, then the mix."""

    targets: dict[str, deque[str]] = field(default_factory=dict)
    default: str | None = None
    mix: dict[str, float] | None = None

    def as_json(self) -> dict[str, Any]:
        """What ``POST /_simulator/script`` answers: the script as stored."""
        return {"targets": {to: list(q) for to, q in self.targets.items()}, "default": self.default, "mix": self.mix}


class ScriptError(ValueError):
    """A script the simulator cannot use; ``pointer`` is the JSON pointer of the bad part."""

    def __init__(self, detail: str, pointer: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.pointer = pointer


def parse_script(body: Mapping[str, Any]) -> Script:
    """``{"targets": {to: [outcome, ...]}, "default": outcome, "mix": {...}}`` → a ``Script``.

    Raises ``ScriptError`` naming the first bad part.
    """
    targets = body.get("targets") or {}
    if not isinstance(targets, dict):
        raise ScriptError("'targets' must be an object of destination -> list of outcomes.", "/targets")
    queues: dict[str, deque[str]] = {}
    for to, outcomes in targets.items():
        pointer = "/targets/" + to.replace("~", "~0").replace("/", "~1")
        if not isinstance(outcomes, list):
            raise ScriptError(f"targets[{to!r}] must be a list of outcomes.", pointer)
        for index, outcome in enumerate(outcomes):
            if not isinstance(outcome, str) or outcome not in OUTCOMES:
                raise ScriptError(
                    f"Unknown outcome {outcome!r} in targets[{to!r}] (valid: {', '.join(sorted(OUTCOMES))}).",
                    f"{pointer}/{index}",
                )
        queues[to] = deque(outcomes)
    default = body.get("default")
    if default is not None and (not isinstance(default, str) or default not in OUTCOMES):
        raise ScriptError(f"Unknown outcome {default!r} in default (valid: {', '.join(sorted(OUTCOMES))}).", "/default")
    mix = body.get("mix")
    if mix is not None:
        if not isinstance(mix, dict):
            raise ScriptError("'mix' must be an object of outcome -> weight.", "/mix")
        try:
            mix = validate_mix(mix)
        except ValueError as exc:
            raise ScriptError(str(exc), "/mix") from None
    return Script(targets=queues, default=default, mix=mix)
