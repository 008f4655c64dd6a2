"""The port between the lifecycle and a telephony provider: what is asked, what comes back, who answers."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from campaigns.states import Channel, MachineDetection


@dataclass(frozen=True)
class DispatchRequest:
    """What the engine asks a provider to do for one attempt."""

    attempt_id: uuid.UUID
    channel: Channel
    assistant_id: str
    to: str
    from_: str
    dynamic_variables: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    connection_id: str | None = None
    sip_region: str | None = None
    """``call_settings.sip_region`` of the event (``US``, ``Europe``, …); the provider's default when ``None``."""
    answering_machine_detection: str = MachineDetection.DISABLED
    """``campaigns.states.MachineDetection``: whether (and how) to ask the provider who answers."""


@dataclass(frozen=True)
class DispatchResult:
    """The provider accepted the request; ``provider_id`` is the call id or message id."""

    provider: str
    provider_id: str
    status: str | None = None


class Telephony(Protocol):
    """A way to place a call or send a message."""

    name: str
    dedupes_repeats: bool
    """The provider ignores a repeat of the same attempt's request within ``transport.RESEND_WINDOW_SECS``."""

    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        """Send the request once. Raises one of the typed ``ProviderError`` subclasses on failure."""
        ...

    def call_is_alive(self, provider_id: str) -> bool | None:
        """Whether a dispatched call is still up; ``None`` when the provider cannot tell."""
        ...

    @property
    def lists_calls(self) -> bool:
        """The provider can list the calls (or messages) from one number to another (``find_call`` may be
        asked)."""
        ...

    def find_call(self, request: DispatchRequest, *, since: datetime, exclude: Collection[str]) -> str | None:
        """The id of a call (for messaging: a message) from ``request.from_`` to ``request.to`` created at or
        after ``since`` (provider time) whose id is not in ``exclude``, or ``None`` when the provider lists none.
        Raises a ``ProviderError`` when the list cannot be read (the provider cannot tell)."""
        ...
