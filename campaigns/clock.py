"""Time is injected: every decision reads a ``Clock``, never ``datetime.now()`` directly.

The warped clock maps real time onto app time (DESIGN.md §3)::

    app_now = TIME_START + (real_now - TIME_WARP_ORIGIN) * TIME_WARP
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from campaigns.settings import Settings


def utcnow_real() -> datetime:
    """Wall-clock time, for the few places that must not be warped (signature tolerance)."""
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """An instant as the API and exports write it: UTC, ISO 8601, ``Z`` suffix; ``None`` stays ``None``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


class Clock(Protocol):
    """Source of app time."""

    @property
    def rate(self) -> float:
        """App seconds per real second (1 unless warped)."""
        ...

    def now(self) -> datetime:
        """The current app instant, timezone-aware UTC."""
        ...


class SystemClock:
    """Real time."""

    rate = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)


class WarpedClock:
    """App time running ``rate`` times faster than real time from ``start`` at real ``origin``.

    With ``origin_file`` and no ``origin``, the clock holds at ``start`` until that file appears and then reads
    its origin from it, once (the demo starts the clock when the whole stack is ready, every process at once).
    """

    def __init__(self, origin: datetime | None, start: datetime, rate: float, origin_file: Path | None = None) -> None:
        if origin is None and origin_file is None:
            raise ValueError("a warped clock needs an origin or an origin file")
        self._origin = origin
        self._origin_file = origin_file
        self.start = start
        self._rate = rate

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def origin(self) -> datetime:
        """The real instant at which app time is ``start`` (while held: now, so that the clock reads ``start``)."""
        return self._read_origin() or datetime.now(UTC)

    def _read_origin(self) -> datetime | None:
        if self._origin is None and self._origin_file is not None:
            try:
                text = self._origin_file.read_text().strip()
            except FileNotFoundError:
                return None
            try:
                self._origin = _aware(datetime.fromisoformat(text))
            except ValueError as exc:
                raise ValueError(
                    f"CAMPAIGNS_TIME_WARP_ORIGIN_FILE {self._origin_file}: not an ISO instant: {text[:40]!r}"
                ) from exc
        return self._origin

    def now(self) -> datetime:
        origin = self._read_origin()
        if origin is None:
            return self.start
        return self.start + (datetime.now(UTC) - origin) * self._rate


class FrozenClock:
    """A clock that only moves when told to (tests)."""

    rate = 1.0

    def __init__(self, at: datetime) -> None:
        self._now = at

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, at: datetime) -> None:
        self._now = at


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def clock_from_settings(settings: Settings) -> Clock:
    """The system clock, or a warped one when any of the warp settings is given.

    Without ``TIME_WARP_ORIGIN`` the origin is the start of this process group: ``campaigns up`` exports it to
    its children so that every process agrees. ``TIME_WARP_ORIGIN_FILE`` holds the clock at ``TIME_START`` (else
    at this moment) until the file gives the origin.
    """
    if settings.time_warp_origin_file is not None:
        held_at = _aware(settings.time_start) if settings.time_start is not None else datetime.now(UTC)
        return WarpedClock(
            origin=None, start=held_at, rate=settings.time_warp, origin_file=settings.time_warp_origin_file
        )
    if settings.time_warp == 1.0 and settings.time_start is None and settings.time_warp_origin is None:
        return SystemClock()
    if settings.time_warp_origin is not None:
        origin = _aware(settings.time_warp_origin)
    else:
        origin = datetime.fromtimestamp(time.time(), UTC)
        os.environ["CAMPAIGNS_TIME_WARP_ORIGIN"] = origin.isoformat()
    start = _aware(settings.time_start) if settings.time_start is not None else origin
    return WarpedClock(origin=origin, start=start, rate=settings.time_warp)


def real_seconds_to_app(clock: Clock, seconds: float) -> timedelta:
    """An operational duration (a lease, a back-off) measured in real seconds, expressed in app time."""
    return timedelta(seconds=seconds * clock.rate)


def app_to_real(clock: Clock, instant: datetime) -> datetime:
    """The real instant at which ``clock`` reads ``instant`` (what a provider, never warped, stamps then)."""
    if isinstance(clock, WarpedClock):
        return clock.origin + (instant - clock.start) / clock.rate
    return instant
