"""Provider-wide dispatch state (DESIGN.md §2.3): the breaker that holds an account the provider refuses, and the
backoff after the provider refused requests for its rate.

- **Holds** (``provider_holds``): a 401/403, or a 404/422 naming the connection or messaging profile
  (``telephony.ProviderHeld``), is about the account, not the recipient. The attempt that met it is kept with
  outcome ``provider_rejected`` (no budget spent), its event parked ``pending`` with ``deferred_reason`` = the
  hold's detail, and the claim check (``checks.ProviderCheck``) parks every due event of that channel the same
  way, so nothing fails. A probe (:func:`probe_held`, beat's ``campaigns.probe_providers``) makes one harmless
  request through the adapter every ``CAMPAIGNS_PROVIDER_PROBE_SECS``; once accepted, the hold closes and the
  parked events are due again.
- **Backoff** (``provider_backoffs``): after a 429 (Telnyx 10011 API rate, 90103 dials per second), a 503, or a
  call refused for the account's channel limit (the D1 403 callback, ``RateBackoff``), no
  new request goes to that provider before a shared "not before" instant: 1 s, then doubling for each refusal
  that follows a wait, capped; Telnyx asks for exactly this ("Implement exponential backoff when receiving 429
  responses": developers.telnyx.com/development/api-fundamentals/reliability/rate-limiting; and for the channel
  limit: docs/voice/sip-trunking/configuration/concurrent-limits).

Both are keyed by provider adapter name and apply to the channel that adapter serves (``messaging`` → SMS, any
other → calls), so a held SMS profile never stops calls. Functions taking a session only flush; ``probe_held``
and ``check_at_start`` own their units of work and make their requests between them, so no row stays locked
while a request is on the wire.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

import campaigns.lifecycle.transitions as transitions
from campaigns.clock import Clock, real_seconds_to_app
from campaigns.db import unit_of_work
from campaigns.lifecycle.locking import lock_attempt
from campaigns.models import ProviderBackoff, ProviderHold
from campaigns.settings import Settings
from campaigns.states import AttemptState, EventStatus
from campaigns.telephony import (
    OutcomeUnknown,
    ProviderHeld,
    Providers,
    TransientProviderError,
    probe,
)
from campaigns.windows import HOLD_UNTIL

log = logging.getLogger(__name__)

PENDING = EventStatus.PENDING


# --- holds -------------------------------------------------------------------------------------------------


def open_hold(
    session: Session, provider: str, held: ProviderHeld, *, now: datetime, probe_at: datetime
) -> ProviderHold:
    """Open the hold of ``provider`` (or keep the open one: its detail, what events show, stays the first one's).

    One statement, safe when every request of a batch meets the same 401 at once.
    """
    row = session.execute(
        insert(ProviderHold)
        .values(
            provider=provider,
            reason=held.reason,
            detail=held.detail,
            opened_at=now,
            next_probe_at=probe_at,
            updated_at=now,
        )
        .on_conflict_do_update(index_elements=[ProviderHold.provider], set_={"updated_at": now})
        .returning(ProviderHold.reason, ProviderHold.detail, ProviderHold.opened_at, text("xmax = 0"))
    ).one()
    if row[3]:
        log.error(
            "provider %s holds dispatch: %s; no event fails for it, a probe runs every few seconds",
            provider,
            held,
            extra={"provider": provider, "reason": held.reason},
        )
    return ProviderHold(
        provider=provider, reason=row[0], detail=row[1], opened_at=row[2], next_probe_at=probe_at, updated_at=now
    )


def record_held(session: Session, attempt_id: uuid.UUID, detail: str, *, now: datetime) -> None:
    """The provider refused the account for this attempt: it stays on the record as ``provider_rejected`` (no
    budget spent), and the event is parked with the hold's detail until the hold closes (or canceled, when a
    cancel was requested meanwhile)."""
    locked = lock_attempt(session, attempt_id)
    if locked is None or locked[0].state != AttemptState.SENDING:
        return
    attempt, event = locked
    transitions.provider_refused(attempt, event, detail, now)
    if event.cancel_requested:
        transitions.release(event, now, now=now)
    else:
        transitions.defer(event, HOLD_UNTIL, detail, "held", now=now)
    session.flush()


_RELEASE_HELD = text(
    f"""
    UPDATE scheduled_events
    SET scheduled_at_fixed_datetime = :now, deferred_reason = NULL, deferred_until = NULL, updated_at = :now
    WHERE status = '{PENDING}' AND scheduled_at_fixed_datetime = :hold_until AND deferred_reason = :detail
    """
)
"""The events a hold parked, due again. ``status = 'pending'`` is a literal and ``scheduled_at = HOLD_UNTIL`` an
equality, so the partial index on pending rows serves it; the detail tells them from events held for a window."""


def close_hold(session: Session, provider: str, *, now: datetime) -> int:
    """Close the hold of ``provider``; the events it parked are due now. Returns how many."""
    closing = delete(ProviderHold).where(ProviderHold.provider == provider).returning(ProviderHold.detail)
    detail = session.scalar(closing)
    if detail is None:
        return 0
    released = session.execute(_RELEASE_HELD, {"now": now, "hold_until": HOLD_UNTIL, "detail": detail})
    count = int(getattr(released, "rowcount", 0) or 0)
    log.warning("provider %s accepts again: hold closed, %d events due again", provider, count)
    return count


def open_holds(session: Session) -> list[ProviderHold]:
    """Every open hold, oldest first (readiness, the campaign view, the metrics)."""
    return list(session.scalars(select(ProviderHold).order_by(ProviderHold.opened_at)))


@dataclass(frozen=True)
class ProbeReport:
    provider: str
    accepted: bool
    answer: str


def probe_held(
    factory: sessionmaker[Session], providers: Providers, *, clock: Clock, settings: Settings
) -> list[ProbeReport]:
    """Probe every hold whose probe is due: one harmless request each (``telephony.probe``); close the accepted.

    The due probes are taken in one statement that moves their ``next_probe_at`` on (committed before any
    request), so two workers running the task at once never probe the same hold twice.
    """
    now = clock.now()
    interval = real_seconds_to_app(clock, settings.provider_probe_secs)
    with unit_of_work(factory) as session:
        due = session.execute(
            text(
                "UPDATE provider_holds SET next_probe_at = :next, updated_at = :now WHERE next_probe_at <= :now "
                "RETURNING provider, reason"
            ),
            {"now": now, "next": now + interval},
        ).all()
    reports: list[ProbeReport] = []
    for provider_name, reason in due:
        try:
            probe(providers.by_name(provider_name), reason)
        except ProviderHeld as exc:
            reports.append(ProbeReport(provider_name, False, str(exc)))
            log.warning("provider %s still refuses the account: %s", provider_name, exc)
            continue
        except (TransientProviderError, OutcomeUnknown) as exc:
            # Not an answer about the account (unreachable, 5xx): try again at the next probe.
            reports.append(ProbeReport(provider_name, False, str(exc)))
            continue
        except Exception as exc:  # a 404 of a probe path, a bug: keep the hold, say why
            reports.append(ProbeReport(provider_name, False, f"{type(exc).__name__}: {exc}"))
            log.warning("probe of provider %s failed: %s", provider_name, exc)
            continue
        with unit_of_work(factory) as session:
            close_hold(session, provider_name, now=clock.now())
        reports.append(ProbeReport(provider_name, True, "accepted"))
    return reports


def check_at_start(
    factory: sessionmaker[Session], providers: Providers, *, clock: Clock, settings: Settings
) -> str | None:
    """Probe the account once at start-up (``GET /balance``): a rejected key opens the holds of every adapter
    at once, before any event meets it. Returns the one line to show, or ``None`` when the key is accepted or
    the provider cannot be reached (dispatch will tell)."""
    try:
        probe(providers.calls, "api_key")
    except ProviderHeld as exc:
        now = clock.now()
        probe_at = now + real_seconds_to_app(clock, settings.provider_probe_secs)
        with unit_of_work(factory) as session:
            for adapter in {providers.calls.name: providers.calls, providers.sms.name: providers.sms}:
                open_hold(session, adapter, exc, now=now, probe_at=probe_at)
        return (
            f"dispatch held: {exc.detail} — check CAMPAIGNS_TELNYX_API_KEY; events stay pending and dispatch resumes "
            f"by itself once the provider accepts it (probed every {settings.provider_probe_secs:g} s)"
        )
    except Exception:
        log.info("start-up probe of the provider gave no answer about the key", exc_info=True)
        return None
    with unit_of_work(factory) as session:  # the key works: holds left open from before close now
        for hold in open_holds(session):
            if hold.reason == "api_key":
                close_hold(session, hold.provider, now=clock.now())
    return None


# --- backoff ------------------------------------------------------------------------------------------------


def backoff_delay(level: int, *, base: timedelta, cap: timedelta) -> timedelta:
    """``base`` doubled for each level above the first, at most ``cap``."""
    doubled: timedelta = base * (2 ** max(0, min(level, 30) - 1))
    return min(cap, doubled)


@dataclass(frozen=True)
class RateBackoff:
    """Which provider backs off after a refusal for its rate, and by how much (``Settings.provider_backoff_*`` in
    app time): what a path that learns of a refusal outside dispatch (a D1 channel-limit callback) needs."""

    provider: str
    base: timedelta
    cap: timedelta

    @classmethod
    def for_calls(cls, settings: Settings, clock: Clock) -> RateBackoff:
        """The call adapter's backoff: its name is ``Settings.call_provider`` (``texml``, ``call_control``), so a
        process that makes no requests (the api) needs no adapters to know it."""
        return cls(
            settings.call_provider,
            real_seconds_to_app(clock, settings.provider_backoff_secs),
            real_seconds_to_app(clock, settings.provider_backoff_max_secs),
        )

    def note(self, session: Session, *, now: datetime) -> datetime:
        """A refusal learnt from a callback: a wait of ``base``, never doubled. Such callbacks arrive seconds after
        their dials, so refusals of dials made before the wait began keep arriving after it ended; doubling on
        them would grow every wait to the cap (measured: 10% of calls refused kept a campaign stalled at the
        60 s cap). The account's own cap, ``CAMPAIGNS_MAX_CONCURRENT_CALLS``, is what keeps calls under the limit."""
        return note_refusal(session, self.provider, now=now, base=self.base, cap=self.cap, escalate=False)


def note_refusal(
    session: Session, provider: str, *, now: datetime, base: timedelta, cap: timedelta, escalate: bool = True
) -> datetime:
    """The provider refused a request for its rate: push the shared "not before" instant on. Returns it.

    Refusals while a wait is running (the rest of the same burst) keep that wait; a refusal soon after the wait
    ended doubles the next one (unless ``escalate`` is false: then every wait is ``base``); one long after starts
    again from ``base``.

    While a wait runs nothing is written, so nothing is locked: the webhook receiver notes a refusal for every
    batch holding a D1 callback, and locking the provider's one row each time made every such batch wait for the
    other committer's (issue 21: with 10% of calls refused, the two webhook committers took turns on that row).
    """
    running = session.scalar(select(ProviderBackoff.not_before).where(ProviderBackoff.provider == provider))
    if running is not None and running > now:
        return running
    session.execute(
        insert(ProviderBackoff)
        .values(provider=provider, level=0, not_before=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[ProviderBackoff.provider])
    )
    row = session.get(ProviderBackoff, provider, with_for_update=True, populate_existing=True)
    assert row is not None  # inserted above or already there; nothing deletes these rows
    if row.not_before > now:
        return row.not_before
    recent = escalate and row.level > 0 and now < row.not_before + backoff_delay(row.level, base=base, cap=cap)
    row.level = row.level + 1 if recent else 1
    row.not_before = now + backoff_delay(row.level, base=base, cap=cap)
    row.updated_at = now
    session.flush()
    log.warning(
        "provider %s refused for its rate: no new request to it before %s (backoff level %d)",
        provider,
        row.not_before.isoformat(),
        row.level,
    )
    return row.not_before
