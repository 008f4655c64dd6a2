"""The campaign page's two charts, drawn on the server as inline SVG (no script needed; the live refresh swaps
the markup): attempts over time by outcome, and the events still waiting by why."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from campaigns.progress import IN_FLIGHT, Timeline, Waiting
from campaigns.states import Outcome
from campaigns.windows import HOLD_UNTIL
from worker.ui.common import when

WIDTH, HEIGHT, LEFT, BOTTOM = 640, 180, 40, 24
"""The attempts chart's viewBox and the room kept for the y labels (left) and the time labels (bottom)."""
OUTCOME_ORDER = (*(o.value for o in Outcome), IN_FLIGHT)
"""Stacking order and legend order (the answered at the bottom); other outcomes (SMS statuses) follow."""


@dataclass(frozen=True)
class Segment:
    outcome: str
    y: float
    height: float
    count: int


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    label: str
    """``08:00 EST to 08:10 EST: 12 answered, 3 busy``: the bar's tooltip and its text for screen readers."""
    segments: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class AttemptsChart:
    bars: list[Bar]
    outcomes: list[str]
    top: int
    """The tallest bar's attempts (the y axis' top label)."""
    ticks: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM


def attempts_chart(timeline: Timeline, zone: str | None) -> AttemptsChart | None:
    """Stacked bars, one per time bucket, one colour per outcome; ``None`` before the first attempt."""
    if timeline.start is None or not timeline.counts:
        return None
    present = {name for bucket in timeline.counts for name in bucket}
    outcomes = [o for o in OUTCOME_ORDER if o in present] + sorted(present - set(OUTCOME_ORDER))
    top = max(1, *(sum(bucket.values()) for bucket in timeline.counts))
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM
    step = plot_w / len(timeline.counts)
    bars = []
    for i, bucket in enumerate(timeline.counts):
        start, end = timeline.bucket_start(i), timeline.bucket_start(i + 1)
        y = float(plot_h)
        segments = []
        for name in outcomes:
            n = bucket.get(name, 0)
            if n:
                h = plot_h * n / top
                y -= h
                segments.append(Segment(name, round(y, 2), round(h, 2), n))
        what = ", ".join(f"{s.count} {s.outcome}" for s in segments) or "no attempt"
        label = f"{_clock(start, zone)} to {_clock(end, zone)}: {what}"
        bars.append(Bar(round(LEFT + i * step + step * 0.1, 2), round(step * 0.8, 2), label, segments))
    last = len(timeline.counts)
    ticks = [(LEFT + i * step, _clock(timeline.bucket_start(i), zone)) for i in sorted({0, last // 2, last})]
    return AttemptsChart(bars, outcomes, top, ticks)


def _clock(instant: datetime, zone: str | None) -> str:
    """``2026-05-07 10:30 EDT`` shortened to ``10:30 EDT`` (the day is in the tooltip's other bars' context)."""
    return when(instant, zone).split(" ", 1)[1]


@dataclass(frozen=True)
class WaitingBar:
    reason: str
    count: int
    until: datetime | None
    held: bool
    """Waiting until someone fixes something (the zone, the provider account), not for a time."""
    percent: float


def waiting_chart(groups: list[Waiting]) -> list[WaitingBar]:
    """One bar per reason the pending events wait for (outside calling hours until when, capped, held for an
    unknown zone, provider blocked, scheduled for later), longest first, as a share of the largest group."""
    top = max((g.count for g in groups), default=0)
    return [
        WaitingBar(
            g.reason,
            g.count,
            g.until,
            g.until is not None and g.until >= HOLD_UNTIL,
            round(100 * g.count / top, 1) if top else 0,
        )
        for g in groups
    ]
