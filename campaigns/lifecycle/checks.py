"""Claim-time checks (DESIGN.md §2.2): run on each claimed event before its attempt is created, none of which
consumes retry budget. A check answers ``None`` (go on), ``Defer`` (back to ``pending`` until a time) or
``Suppress`` (fail without a provider request).

``default_checks`` is the list every claim runs: do-not-contact, calling window, provider holds and backoff,
pacing (the campaign's, then the account's), frequency caps. A new
check is a callable with the ``ClaimCheck`` signature, added there; it decides and never writes a status (the
claim applies its answer through ``transitions``).
"""

from __future__ import annotations

import functools
import logging
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from campaigns import logs, windows
from campaigns.models import CallAttempt, Campaign, ProviderBackoff, ProviderHold, ScheduledEvent, Suppression
from campaigns.phones import contact_number, is_sip_uri, sip_user_looks_numeric
from campaigns.settings import Settings, get_settings
from campaigns.states import AttemptState, Channel, EventStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Defer:
    """Put the event back to ``pending`` until ``until``; no retry budget is consumed."""

    until: datetime
    reason: str
    kind: str = "window"
    """Bounded label for metrics and reports: ``window``, ``held``, ``pacing`` or ``frequency_cap``."""


@dataclass(frozen=True)
class Suppress:
    """Fail the event without dispatching it."""

    reason: str
    kind: str = "do_not_contact"
    """Bounded label for metrics and reports: ``do_not_contact`` (the suppression list, opt-outs, blocks)."""


class ClaimCheck(Protocol):
    """A check run on each claimed event before its attempt is created (windows, suppression, pacing)."""

    def __call__(self, session: Session, event: ScheduledEvent, now: datetime) -> Defer | Suppress | None: ...


def window_context(session: Session, event: ScheduledEvent) -> tuple[windows.Ruleset | None, windows.Recipient] | None:
    """The event's ruleset and recipient; ``None`` when no window applies; a ``None`` ruleset when it is unusable.

    Candidate zones are resolved once, at the first check, and stored on the event.
    """
    if event.ruleset == "none":
        return None
    campaign = session.get(Campaign, event.campaign_id) if event.campaign_id is not None else None
    try:
        ruleset: windows.Ruleset | None = windows.get_ruleset(
            event.ruleset, campaign.custom_windows if campaign is not None else None
        )
    except windows.RulesetError:
        ruleset = None
    if event.timezone_candidates is None:  # a SIP URI target: ``windows`` reads the number in its user part
        event.timezone_candidates = windows.candidate_zones(
            phone=event.telnyx_end_user_target,
            timezone=event.timezone,
            state=event.state,
            default_zone=campaign.timezone if campaign is not None else None,
        )
    recipient = windows.recipient_for(
        phone=event.telnyx_end_user_target, zones=event.timezone_candidates, state=event.state
    )
    return ruleset, recipient


NOT_A_NUMBER_NO_WINDOW = "no calling window: the SIP target's user part is no phone number (a SIP username)"
"""Logged for a SIP target such as ``sip:alice@pbx.example``: no number-based rule can apply to it."""


def sip_window_exception(target: str) -> Defer | str | None:
    """How the calling window treats a SIP URI target whose user part gives no number: a user part of digits
    that cannot be read as a number is held (it is meant as one: never dial it unchecked); a SIP username gets
    no window (the returned sentence says so). ``None``: not such a target (a number, or a SIP URI of one)."""
    if not is_sip_uri(target) or contact_number(target) is not None:
        return None
    if sip_user_looks_numeric(target):
        return Defer(
            windows.HOLD_UNTIL,
            "held: the SIP target's user part is digits but not a phone number in international form "
            "(write it as sip:+<country code><number>@host)",
            kind="held",
        )
    return NOT_A_NUMBER_NO_WINDOW


def window_check(session: Session, event: ScheduledEvent, now: datetime) -> Defer | None:
    """Defer an event whose recipient is outside the calling window to the next opening (or hold it).

    A SIP URI target is checked as the number in its user part; see :func:`sip_window_exception` for one
    without a number.
    """
    if event.ruleset != "none":
        exception = sip_window_exception(event.telnyx_end_user_target)
        if isinstance(exception, Defer):
            return exception
        if exception is not None:
            log.info(exception, extra=logs.event_fields(event))
            return None
    context = window_context(session, event)
    if context is None:
        return None
    ruleset, recipient = context
    if ruleset is None:
        return Defer(windows.HOLD_UNTIL, f"held: ruleset {event.ruleset!r} is not defined or invalid", kind="held")
    if not ruleset.needs_zone:
        return None
    if not recipient.zones:
        return Defer(windows.HOLD_UNTIL, "held: the recipient's time zone could not be determined", kind="held")
    if windows.is_allowed(now, recipient, ruleset):
        return None
    opening = windows.cached_next_opening(now, recipient, ruleset)
    if opening is None:
        return Defer(
            windows.HOLD_UNTIL,
            f"held: no opening within {windows.SEARCH_DAYS} days under ruleset {ruleset.label}",
            kind="held",
        )
    blocking = sorted({v.rule.id for v in windows.verdicts(now, recipient, ruleset) if not v.allowed})
    return Defer(
        opening,
        f"outside the calling window ({ruleset.label}: {', '.join(blocking)}) in {', '.join(recipient.zones)}",
    )


def recipient_key(target: str) -> str:
    """What an attempt's ``recipient`` stores, the key frequency caps count by: the number a target reaches
    (a SIP URI's user part included), or the target as written when it reaches no number."""
    return _canonical(target)


class FrequencyCapCheck:
    """Rolling-window attempt caps per recipient, across all campaigns and caller numbers.

    Caps come from the ruleset's state rules (e.g. Florida: 3 per 24 h) and from the campaign
    (``cap_max_attempts`` per ``cap_window_secs``). Every attempt row counts (withdrawn attempts are deleted, so
    only dials that were or may have been placed remain), plus the attempts this batch is about to create. A
    per-number advisory lock, held until the claim commits, keeps two schedulers from both taking the last slot;
    a scheduler that cannot take it defers the event by a second instead of waiting. A capped event is deferred
    to when the oldest counted attempt leaves the window: deferred, never dropped.
    """

    def __init__(self) -> None:
        self.batch: dict[str, list[datetime]] = {}

    def _caps(self, session: Session, event: ScheduledEvent) -> list[tuple[str, windows.Cap]]:
        caps: list[tuple[str, windows.Cap]] = []
        context = window_context(session, event)
        if context is not None and context[0] is not None:
            ruleset, recipient = context[0], context[1]
            caps += [(f"{rule.id}: {rule.citation}", cap) for rule, cap in ruleset.caps_for(recipient.states)]
        campaign = session.get(Campaign, event.campaign_id) if event.campaign_id is not None else None
        if campaign is not None and campaign.cap_max_attempts:
            window = timedelta(seconds=campaign.cap_window_secs or 86400)
            caps.append(("campaign cap", windows.Cap(campaign.cap_max_attempts, window)))
        return caps

    def __call__(self, session: Session, event: ScheduledEvent, now: datetime) -> Defer | None:
        caps = self._caps(session, event)
        if not caps:
            return None
        # Counted per number: a SIP URI of a number shares the number's history (attempts store ``recipient``
        # as :func:`recipient_key`; rows written before that hold the target as written, so both are read).
        written = event.telnyx_end_user_target
        target = recipient_key(written)
        if target not in self.batch:
            locked = session.execute(
                text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"cap:{target}"}
            ).scalar_one()
            if not locked:
                return Defer(
                    now + timedelta(seconds=1), "frequency cap: another scheduler is counting", kind="frequency_cap"
                )
            self.batch[target] = []
        longest = max(cap.window for _, cap in caps)
        history = list(
            session.scalars(
                select(CallAttempt.claimed_at)
                .where(CallAttempt.recipient.in_({target, written}), CallAttempt.claimed_at > now - longest)
                .order_by(CallAttempt.claimed_at.desc())
            )
        )
        times = sorted([*history, *self.batch[target]], reverse=True)
        until: datetime | None = None
        reasons: list[str] = []
        for source, cap in caps:
            recent = [t for t in times if t > now - cap.window]
            if len(recent) >= cap.attempts:
                free_at = recent[cap.attempts - 1] + cap.window
                if until is None or free_at > until:
                    until = free_at
                hours = cap.window.total_seconds() / 3600
                reasons.append(f"{cap.attempts} attempts per {hours:g} h ({source})")
        if until is not None:
            return Defer(until, f"frequency cap: {'; '.join(reasons)}", kind="frequency_cap")
        self.batch[target].append(now)
        return None


def rate_budget(rate: float) -> tuple[int, float]:
    """A campaign's ``max_dispatches_per_second`` as at most ``n`` attempts in any ``window`` seconds: the window
    is ⌈1/rate⌉ s (one second from one per second up), ``n`` the whole attempts the rate allows in it (at least
    one), so the rate is never exceeded over any window: 0.2/s → 1 per 5 s, 0.5/s → 1 per 2 s, 2.5/s → 2 per 1 s."""
    window = max(1.0, float(math.ceil(1 / rate - 1e-9)))
    return max(1, math.floor(rate * window + 1e-9)), window


class PacingCheck:
    """A campaign's ``max_concurrent_calls`` and ``max_dispatches_per_second``, counted once per claim batch.

    Live calls are attempts not yet finished; the dispatch rate allows the attempts of :func:`rate_budget` in
    any rolling window of app seconds, so a fractional rate is honoured (0.2/s is one attempt in any 5 s, 0.5/s
    one in any 2 s; a one-second window compared with ``used >= rate`` let 0.2/s dial once a second, issue #19).
    Events over a limit go back to ``pending`` shortly after, without consuming an attempt.
    """

    def __init__(self) -> None:
        self.limits: dict[uuid.UUID, tuple[int | None, float | None]] = {}
        self.used: dict[uuid.UUID, list[int]] = {}

    def __call__(self, session: Session, event: ScheduledEvent, now: datetime) -> Defer | None:
        campaign_id = event.campaign_id
        if campaign_id is None:
            return None
        if campaign_id not in self.limits:
            row = session.execute(
                select(Campaign.max_concurrent_calls, Campaign.max_dispatches_per_second).where(
                    Campaign.id == campaign_id
                )
            ).one()
            self.limits[campaign_id] = (row[0], row[1])
            live = recent = 0
            window = rate_budget(row[1])[1] if row[1] is not None else 1.0
            if row[0] is not None or row[1] is not None:
                live, recent = session.execute(
                    select(
                        # Live: claimed, sending, sent or unknown.
                        func.count().filter(CallAttempt.state != AttemptState.FINISHED),
                        func.count().filter(CallAttempt.claimed_at > now - timedelta(seconds=window)),
                    )
                    .join(ScheduledEvent, ScheduledEvent.id == CallAttempt.event_id)
                    .where(ScheduledEvent.campaign_id == campaign_id)
                ).one()
            self.used[campaign_id] = [int(live), int(recent)]
        max_live, max_rate = self.limits[campaign_id]
        used = self.used[campaign_id]
        if max_live is not None and used[0] >= max_live:
            return Defer(now + timedelta(seconds=1), f"pacing: {max_live} concurrent calls in progress", kind="pacing")
        if max_rate is not None and used[1] >= rate_budget(max_rate)[0]:
            return Defer(
                now + timedelta(seconds=1), f"pacing: {max_rate:g} dispatches per second reached", kind="pacing"
            )
        used[0] += 1
        used[1] += 1
        return None


def channel_of(provider: str) -> Channel:
    """The channel a provider adapter serves: ``messaging`` sends SMS, every other adapter places calls."""
    return Channel.SMS_CHAT if provider == "messaging" else Channel.PHONE_CALL


class ProviderCheck:
    """Events of a channel whose provider holds the account, or is backing off, stay ``pending`` (no budget).

    A hold (``provider_holds``: a rejected key, a missing connection or messaging profile) parks the event until
    the hold closes (``holds.close_hold`` makes it due again), with the hold's detail as ``deferred_reason``
    (kind ``held``). A backoff (``provider_backoffs``, after a 429) defers it to the shared "not before" instant
    (kind ``pacing``). Both tables hold a row per adapter at most: read once per claim batch.
    """

    def __init__(self) -> None:
        self.held: dict[Channel, str] | None = None
        self.not_before: dict[Channel, datetime] = {}

    def _load(self, session: Session) -> dict[Channel, str]:
        held: dict[Channel, str] = {}
        for provider, detail in session.execute(
            select(ProviderHold.provider, ProviderHold.detail).order_by(ProviderHold.opened_at)
        ):
            held.setdefault(channel_of(provider), detail)
        for provider, not_before in session.execute(select(ProviderBackoff.provider, ProviderBackoff.not_before)):
            channel = channel_of(provider)
            if channel not in self.not_before or not_before > self.not_before[channel]:
                self.not_before[channel] = not_before
        return held

    def __call__(self, session: Session, event: ScheduledEvent, now: datetime) -> Defer | None:
        if self.held is None:
            self.held = self._load(session)
        channel = Channel(event.telnyx_conversation_channel)
        detail = self.held.get(channel)
        if detail is not None:
            return Defer(windows.HOLD_UNTIL, detail, kind="held")
        not_before = self.not_before.get(channel)
        if not_before is not None and not_before > now:
            return Defer(not_before, "pacing: the provider refused requests for its rate; backing off", kind="pacing")
        return None


DIALS_WINDOW_SECS = 5.0
"""Telnyx measures the dials-per-second limit over a rolling 5 s: "Telnyx sums the number of dial attempts made
in the trailing 5-second window and compares that total against 30 x 5 = 150" (default 30 dials per second;
developers.telnyx.com/docs/voice/programmable-voice/dials-per-second-limit)."""


def dial_budget(rate: float) -> tuple[int, float]:
    """At most ``n`` dials in any ``window`` real seconds for ``rate`` dials per second: ``rate * 5`` per 5 s as
    Telnyx counts, or, for a rate below one dial per 5 s, one dial per ``1 / rate`` s (never more than the
    rate: 0.2/s is one dial in any 5 s, 0.1/s one in any 10 s)."""
    dials = max(1, math.floor(rate * DIALS_WINDOW_SECS + 1e-9))
    return dials, max(DIALS_WINDOW_SECS, dials / rate)


class AccountPacingCheck:
    """The account-wide caps on calls, across every event and campaign and every scheduler of the cluster:
    ``CAMPAIGNS_MAX_CONCURRENT_CALLS`` (calls in progress: attempts not finished) and
    ``CAMPAIGNS_MAX_DIALS_PER_SECOND`` (attempts claimed in the rolling window of :func:`dial_budget`).

    Counted once per claim batch from PostgreSQL (two indexed counts, in one statement), then kept up to date as
    the batch lets calls through. Near a cap (less room than ten claim batches), an advisory lock held until the
    claim commits makes schedulers count one after the other, so two of them never both take the last slot:
    the caps are exact cluster-wide. A scheduler that cannot take the lock defers its calls by a real second
    rather than wait (as the frequency cap does: a wait inside a claim could deadlock with the holder). Far from
    every cap no lock is taken, so racing schedulers do not queue behind each other. Over a cap, the event goes
    back to ``pending`` a real second later (kind ``pacing``), no budget used. Messages are not calls and pass.
    """

    LOCK_KEY = "campaigns:account-pacing"

    def __init__(self, settings: Settings) -> None:
        self.max_live = settings.max_concurrent_calls
        self.max_dials, window = dial_budget(settings.max_dials_per_second)
        self.window = timedelta(seconds=window * settings.time_warp)  # app seconds, as ``claimed_at`` is
        self.retry_in = timedelta(seconds=settings.time_warp)  # one real second
        self.rate = settings.max_dials_per_second
        self.used: list[int] | None = None
        self.lock_free_headroom = 10 * settings.claim_batch_size

    def _count(self, session: Session, now: datetime) -> list[int] | None:
        """Calls in progress and dials in the window; ``None`` when another scheduler is counting near a cap."""
        used = self._read(session, now)
        if self._headroom(used) >= self.lock_free_headroom:
            return used  # far from every cap: schedulers claiming at once cannot reach it together
        locked = session.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": self.LOCK_KEY}
        ).scalar_one()
        return self._read(session, now) if locked else None

    def _read(self, session: Session, now: datetime) -> list[int]:
        finished = AttemptState.FINISHED
        live, recent = session.execute(
            text(
                # Literals, not parameters: ``ix_call_attempts_live`` serves only a predicate naming the same one.
                f"SELECT count(*) FILTER (WHERE state <> '{finished}' AND provider <> 'messaging'), "
                "count(*) FILTER (WHERE claimed_at > :since AND provider <> 'messaging') "
                f"FROM call_attempts WHERE state <> '{finished}' OR claimed_at > :since"
            ),
            {"since": now - self.window},
        ).one()
        return [int(live), int(recent)]

    def _headroom(self, used: list[int]) -> int:
        room = self.max_dials - used[1]
        return min(room, self.max_live - used[0]) if self.max_live is not None else room

    def __call__(self, session: Session, event: ScheduledEvent, now: datetime) -> Defer | None:
        if event.telnyx_conversation_channel != Channel.PHONE_CALL:
            return None
        if self.used is None:
            self.used = self._count(session, now)
            if self.used is None:
                return Defer(now + self.retry_in, "pacing: another scheduler is counting the account's calls", "pacing")
        live, recent = self.used
        if self.max_live is not None and live >= self.max_live:
            return Defer(
                now + self.retry_in,
                f"pacing: {self.max_live} calls in progress on the account (CAMPAIGNS_MAX_CONCURRENT_CALLS)",
                kind="pacing",
            )
        if recent >= self.max_dials:
            return Defer(
                now + self.retry_in,
                f"pacing: {self.rate:g} dials per second on the account (CAMPAIGNS_MAX_DIALS_PER_SECOND)",
                kind="pacing",
            )
        self.used[0] += 1
        self.used[1] += 1
        return None


# --- do-not-contact -----------------------------------------------------------------------------------------
# The list itself (its entries, files, opt-outs, provider blocks) is ``campaigns.suppression``; the lifecycle only
# reads its table, here, so that neither package imports the other.


@functools.lru_cache(maxsize=4096)  # ~10 µs a miss; a campaign's numbers rarely repeat soon, so kept small
def _canonical(target: str) -> str:
    """The listed form of an event's target: the events API keeps ``+4402…`` as written, the list ``+442…``; a
    SIP URI is listed as the number in its user part (``sip:+12125550147@sip.telnyx.com`` → ``+12125550147``)."""
    return contact_number(target) or target


def suppressed_targets(session: Session, targets: Iterable[str]) -> dict[str, str]:
    """Which event targets are on the list (as written or in canonical E.164), with their reason: one query on
    the primary key."""
    forms = {target: {target, _canonical(target)} for target in set(targets)}
    wanted = list({form for both in forms.values() for form in both})
    if not wanted:
        return {}
    rows = session.execute(select(Suppression.phone, Suppression.reason).where(Suppression.phone.in_(wanted)))
    found = {phone: reason for phone, reason in rows}
    out: dict[str, str] = {}
    for target, both in forms.items():
        reason = next((found[form] for form in sorted(both) if form in found), None)
        if reason is not None:
            out[target] = reason
    return out


def _describe(reason: str) -> str:
    return {
        "manual": "added by an operator",
        "file": "from an imported do-not-contact file",
        "sms_opt_out": "the recipient opted out by SMS",
        "provider_block": "the provider blocks messages to it (recipient opted out)",
    }.get(reason, reason)


def suppressed_error(phone: str, reason: str) -> str:
    """The ``errors`` entry of an event that was not dispatched because its number is suppressed."""
    return f"not dispatched: {phone} is on the do-not-contact list ({reason}: {_describe(reason)})"


class DoNotContactCheck:
    """Claim check: an event whose recipient is on the list fails without a provider request.

    One instance per claim batch. On its first call it looks up, in one query on the primary key, the
    recipients of every ``in_progress`` event the session holds (the claim has just loaded its whole batch),
    then answers from that dictionary; a recipient it has not seen gets its own primary-key lookup, so the
    answer never depends on what the session happens to hold.
    """

    def __init__(self) -> None:
        self.known: dict[str, str] | None = None

    def __call__(self, session: Session, event: ScheduledEvent, now: datetime) -> Suppress | None:
        target = event.telnyx_end_user_target
        with session.no_autoflush:  # decisions already taken for earlier events are flushed once, at the end
            if self.known is None:
                self.known = self._load_batch(session, event)
            if target not in self.known:
                self.known[target] = suppressed_targets(session, [target]).get(target, "")
        reason = self.known[target]
        if not reason:
            return None
        return Suppress(suppressed_error(target, reason), kind="do_not_contact")

    @staticmethod
    def _load_batch(session: Session, event: ScheduledEvent) -> dict[str, str]:
        targets = {event.telnyx_end_user_target}
        for obj in list(session.identity_map.values()):
            if isinstance(obj, ScheduledEvent) and obj.status == EventStatus.IN_PROGRESS:
                targets.add(obj.telnyx_end_user_target)
        found = suppressed_targets(session, targets)
        return {target: found.get(target, "") for target in targets}


def default_checks(settings: Settings | None = None) -> tuple[ClaimCheck, ...]:
    """The checks every claim runs, fresh per batch: do-not-contact first, then the calling window, then the
    provider's holds and backoff, then the campaign's pacing; the frequency cap and the account's caps last,
    because they count the attempt they let through (a call the account's caps then defer was counted once too
    many by the frequency cap for the rest of this batch only: on the safe side)."""
    return (
        DoNotContactCheck(),
        window_check,
        ProviderCheck(),
        PacingCheck(),
        FrequencyCapCheck(),
        AccountPacingCheck(settings or get_settings()),
    )
