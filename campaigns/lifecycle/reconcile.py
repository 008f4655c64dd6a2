"""Reconciliation (DESIGN.md §2.6): settling ``in_progress`` events whose lease expired without a terminal
outcome. An attempt that may have reached the provider is never re-sent blindly: the provider is asked where it
can tell; a call it cannot tell about keeps its lease until the longest the call could last; otherwise the
attempt is closed as unknown and the event fails closed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, aliased, sessionmaker

import campaigns.lifecycle.transitions as transitions
from campaigns import metrics
from campaigns.db import unit_of_work
from campaigns.lifecycle.dispatch import dispatch_request, record_dispatched_many
from campaigns.lifecycle.locking import WITHOUT_ATTEMPTS, lock_attempts_by_id
from campaigns.models import CallAttempt, ScheduledEvent
from campaigns.states import AttemptState, Channel, EventStatus, MessageStatus, Outcome
from campaigns.telephony import DispatchRequest, DispatchResult, Providers, request_pool

RECONCILE_CONCURRENCY = 16
"""How many "is this call still up?" questions one reconcile pass has in flight at once."""

LONGEST_CALL = timedelta(seconds=120 + 14400)
"""The longest a placed call can last, from its request: ringing, then the call's time limit. The engine sends
no time limit, so Telnyx's default applies: TeXML ``TimeLimit`` "default is 14400 seconds" (30 to 14400) and Call
Control ``time_limit_secs`` "the default time limit is 14400 seconds or 4 hours and this is also the maximum
allowed call length" (the official SDK's ``telnyx/types/texml_initiate_ai_call_params.py`` and
``call_dial_params.py``, 4.189.0). Ringing: TeXML ``Timeout`` is at most 120 s (default 30), and the engine's dial
sends ``timeout_secs`` 30. Until then a status query that cannot tell (404, 5xx, a timeout) is no proof the call
is over, so the lease is extended instead of failing the attempt."""


@dataclass
class ReconcileReport:
    withdrawn: int = 0
    extended: int = 0
    failed_unknown: int = 0
    completed_sms: int = 0
    undetermined: int = 0
    """Of ``extended``: calls the provider could not tell about (their lease is bounded by ``LONGEST_CALL``)."""
    resent: int = 0
    """Unknown attempts sent again, with the same id, to a provider that ignores repeats (Call Control's
    ``command_id``) and accepted: the call exists exactly once, and its callbacks settle it."""
    found_placed: int = 0
    """Unknown attempts whose call or message the provider's list shows (TeXML, messaging): placed, their id kept;
    the status query and the callbacks settle them."""
    looked_up: int = 0
    """Unknown attempts looked up in the provider's list and not found yet (asked again later)."""
    not_placed: int = 0
    """Unknown attempts the provider's list never showed within the lookup bound, named by no callback: recorded
    ``not_placed`` and their events dialled again (``CallLookup.redial_not_found``)."""
    awaiting_callback: int = 0
    """Of ``extended``: calls the provider says are over whose terminal status has not arrived yet, waiting for it
    within the callback grace (their callbacks may be queued at the provider or in the engine's webhook path)."""


def _same_instant(instant: datetime) -> datetime:
    return instant


@dataclass(frozen=True)
class CallLookup:
    """How the reconciler looks an unknown attempt up in a provider's call list (``Telephony.find_call``).

    ``every``: how long to wait before asking again after no match (app time); ``until``: how long after its
    request an attempt keeps being looked up before it fails closed (app time; the list is eventually
    consistent); ``provider_time``: an app instant as the provider's clock reads it (the clock may be warped).
    """

    every: timedelta
    until: timedelta
    provider_time: Callable[[datetime], datetime] = field(default=_same_instant)
    redial_not_found: bool = False
    """At ``until``, an attempt the list still does not show, read without error, and that no callback named
    (it is still ``unknown``), was not placed: ``not_placed`` and dialled again, instead of failing closed."""


@dataclass(frozen=True)
class _LiveCheck:
    """A sent call whose lease expired: the provider is asked whether it is still up, with no lock held."""

    attempt_id: uuid.UUID
    provider: str
    provider_id: str


@dataclass(frozen=True)
class _Resend:
    """An attempt whose request may or may not have reached a provider that ignores repeats: sent again."""

    provider: str
    request: DispatchRequest


@dataclass(frozen=True)
class _Lookup:
    """An attempt whose request may or may not have reached a provider that lists calls: looked up there."""

    provider: str
    request: DispatchRequest
    sent_at: datetime
    exclude: frozenset[str] = frozenset()
    """The call ids of the event's other attempts (the same numbers, earlier): never this attempt's call."""


@dataclass
class _Questions:
    """What a reconcile pass asks the provider once its first transaction is committed."""

    checks: list[_LiveCheck] = field(default_factory=list)
    resends: list[_Resend] = field(default_factory=list)
    lookups: list[_Lookup] = field(default_factory=list)


TOOK_OVER = "the worker recorded no answer from the provider within the sending lease"
"""Why a ``sending`` attempt became ``unknown`` in the reconciler's hands (its worker is taken for dead)."""


def reconcile_expired_leases(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    providers: Providers,
    call_lease: timedelta,
    limit: int = 500,
    resend_within: timedelta | None = None,
    lookup: CallLookup | None = None,
    callback_grace: timedelta = timedelta(0),
) -> ReconcileReport:
    """Settle ``in_progress`` events whose lease expired without a terminal outcome.

    - never sent (attempt still ``claimed``, or no attempt): withdrawn, event back to ``pending`` now;
    - sent and the provider says the call is still up: lease extended;
    - sent and the provider says the call is over, but its terminal status has not arrived: it waits for it until
      ``callback_grace`` after the provider first said so (``provider_ended_at``): the callbacks may be queued at
      the provider or in the engine's own webhook path, and an engine that is behind must not close the call as
      lost; past the grace, closed as unknown (a terminal status arriving later still wins);
    - sent and the provider cannot tell (``call_is_alive`` is ``None``: a 404, a 5xx, a timeout): lease extended,
      never past the longest the call could last (``LONGEST_CALL`` from its request); past that, closed as unknown;
    - an SMS the provider accepted (``sent``) with no final receipt: completed, as Telnyx would report it;
    - a request whose outcome is unknown (``sending`` past the sending lease: the worker died; ``unknown``: it
      timed out) to a provider that ignores repeats (``dedupes_repeats``: Call Control's ``command_id``), no more
      than ``resend_within`` after it left: sent again with the same id; accepted, the attempt is ``sent`` (one
      call either way);
    - such a request to a provider that lists what it sent (``lists_calls``: TeXML's call list with an account
      SID, messaging's detail records), with ``lookup`` given: looked up there; a call or message from the agent
      number to the target created after the request is this attempt's (``sent`` with its id: the status query
      and the callbacks settle it); none yet: asked again ``lookup.every`` later, until ``lookup.until`` after
      the request; then, the list read without error and no callback having named the attempt, it was not
      placed (``not_placed``, dialled again, with ``lookup.redial_not_found``), else failed closed;
    - otherwise the attempt is closed as unknown and the event fails closed. It is never re-dialled.

    A ``sending`` attempt the reconciler acts on becomes ``unknown`` first: its worker, if it is alive after all
    and its answer merely late, then records nothing but an acceptance (a late refusal cannot withdraw an attempt
    whose repeat may have been accepted, which would let the event be dialled again with a new attempt).

    Three short transactions, so no event stays locked while the provider is asked about a call: a webhook for
    that event (or for any event batched with it) would wait behind a provider round trip per expired call. The
    first settles everything that needs no question and extends the lease of the calls to ask about by
    ``call_lease``, so a concurrent reconciler leaves them alone (and if this one dies, they come back when that
    lease expires); then the provider is asked; the last re-locks those events and fails closed the ones whose
    call is over and whose attempt is still the one asked about.
    """
    dedupes = {p.name for p in (providers.calls, providers.sms) if p.dedupes_repeats}
    listers = {p.name for p in (providers.calls, providers.sms) if p.lists_calls} if lookup is not None else set()
    with unit_of_work(sessions) as session:
        report, questions = _settle_expired(
            session,
            now=now,
            call_lease=call_lease,
            limit=limit,
            dedupes=dedupes,
            resend_within=resend_within,
            listers=listers,
            lookup=lookup,
        )
    if questions.resends:
        _resend(sessions, questions.resends, providers=providers, now=now, call_lease=call_lease, report=report)
    if questions.lookups and lookup is not None:
        _look_up(sessions, questions.lookups, providers=providers, now=now, lookup=lookup, call_lease=call_lease,
                 report=report)  # fmt: skip
    if questions.checks:
        _check_alive(sessions, questions.checks, providers=providers, now=now, call_lease=call_lease,
                     callback_grace=callback_grace, report=report)  # fmt: skip
    return report


def _check_alive(
    sessions: sessionmaker[Session],
    checks: list[_LiveCheck],
    *,
    providers: Providers,
    now: datetime,
    call_lease: timedelta,
    callback_grace: timedelta,
    report: ReconcileReport,
) -> None:
    """Ask whether each call is still up, with no lock held; then extend, wait for the callback, or fail closed."""

    def ask(check: _LiveCheck) -> tuple[uuid.UUID, bool | None]:
        return check.attempt_id, providers.by_name(check.provider).call_is_alive(check.provider_id)

    # Up to RECONCILE_CONCURRENCY questions at once: a pass over hundreds of live calls took one round trip each.
    alive = dict(
        request_pool("reconcile", RECONCILE_CONCURRENCY).map(ask, checks) if len(checks) > 1 else map(ask, checks)
    )
    with unit_of_work(sessions) as session:
        for attempt, event in lock_attempts_by_id(session, [check.attempt_id for check in checks]):
            verdict = alive[attempt.id]
            if verdict:
                report.extended += 1
                continue
            if attempt.state != AttemptState.SENT or not transitions.current_attempt_matches(event, attempt):
                continue  # settled by a webhook while the provider was asked
            deadline = (attempt.attempted_at or event.dispatched_at or now) + LONGEST_CALL
            if verdict is None and now < deadline:
                # "Cannot tell" is not "over": wait for the callback, at most until the call's time limit.
                event.lease_expires_at = min(now + call_lease, deadline)
                report.extended += 1
                report.undetermined += 1
                continue
            if verdict is not None:
                if attempt.provider_ended_at is None:
                    attempt.provider_ended_at = now
                waited_until = attempt.provider_ended_at + callback_grace
                if now < waited_until:
                    # Over at the provider, its terminal status on the way: the engine behind is not a lost call.
                    event.lease_expires_at = waited_until
                    report.extended += 1
                    report.awaiting_callback += 1
                    continue
            if verdict is None:
                why = "no terminal status arrived and the provider could not tell within the call's time limit"
            elif callback_grace:
                why = (
                    f"the provider said the call was over, but no terminal status arrived within "
                    f"{callback_grace.total_seconds():g} s"
                )
            else:
                why = "no terminal status arrived before the lease expired"
            transitions.fail_unknown(attempt, event, now, why)
            report.failed_unknown += 1
        session.flush()


def _resend(
    sessions: sessionmaker[Session],
    resends: list[_Resend],
    *,
    providers: Providers,
    now: datetime,
    call_lease: timedelta,
    report: ReconcileReport,
) -> None:
    """Send each again with no lock held; record the accepted, fail closed the rest (nobody can tell)."""

    def send(resend: _Resend) -> tuple[uuid.UUID, DispatchResult | str]:
        try:
            return resend.request.attempt_id, providers.by_name(resend.provider).dispatch(resend.request)
        except Exception as exc:  # any answer but an acceptance: the first request may still have placed it
            return resend.request.attempt_id, f"{type(exc).__name__}: {exc}"

    answers = dict(request_pool("reconcile", RECONCILE_CONCURRENCY).map(send, resends))
    accepted = [(a, answer) for a, answer in answers.items() if isinstance(answer, DispatchResult)]
    with unit_of_work(sessions) as session:
        record_dispatched_many(session, accepted, now=now, call_lease=call_lease)
        report.resent += len(accepted)
        refused = [a for a, answer in answers.items() if not isinstance(answer, DispatchResult)]
        for attempt, event in lock_attempts_by_id(session, refused):
            if attempt.state not in (AttemptState.SENDING, AttemptState.UNKNOWN):
                continue  # a callback proved it placed meanwhile
            if not transitions.current_attempt_matches(event, attempt):
                continue
            transitions.fail_unknown(
                attempt, event, now, f"the provider request timed out after sending; sent again: {answers[attempt.id]}"
            )
            report.failed_unknown += 1
        session.flush()


def _look_up(
    sessions: sessionmaker[Session],
    lookups: list[_Lookup],
    *,
    providers: Providers,
    now: datetime,
    lookup: CallLookup,
    call_lease: timedelta,
    report: ReconcileReport,
) -> None:
    """Look each up with no lock held; keep the calls found; fail closed those past the bound (nobody can tell)."""

    def ask(item: _Lookup) -> tuple[uuid.UUID, str | Exception | None]:
        provider = providers.by_name(item.provider)
        try:
            since = lookup.provider_time(item.sent_at)
            return item.request.attempt_id, provider.find_call(item.request, since=since, exclude=item.exclude)
        except Exception as exc:  # the list could not be read: the provider cannot tell (yet)
            return item.request.attempt_id, exc

    answers = dict(request_pool("reconcile", RECONCILE_CONCURRENCY).map(ask, lookups))
    found = [
        (item.request.attempt_id, DispatchResult(item.provider, answer))
        for item in lookups
        if isinstance(answer := answers[item.request.attempt_id], str)
    ]
    over = {item.request.attempt_id: item for item in lookups if now >= item.sent_at + lookup.until}
    with unit_of_work(sessions) as session:
        record_dispatched_many(session, found, now=now, call_lease=call_lease)
        report.found_placed += len(found)
        report.looked_up += len(lookups) - len(found)
        given_up = [a for a in over if not isinstance(answers[a], str)]
        for attempt, event in lock_attempts_by_id(session, given_up):
            if attempt.state not in (AttemptState.SENDING, AttemptState.UNKNOWN):
                continue  # a callback, or the worker's late answer, proved it placed meanwhile
            if not transitions.current_attempt_matches(event, attempt):
                continue
            answer = answers[attempt.id]
            request = over[attempt.id].request
            bound = lookup.until.total_seconds()
            sms = request.channel == Channel.SMS_CHAT
            listing, thing = ("message records", "message") if sms else ("call list", "call")
            if answer is None and lookup.redial_not_found:
                # The list, read without error, never showed it, and no callback named it (it is still unknown):
                # by the provider's own records nobody was contacted.
                transitions.not_placed(
                    attempt,
                    event,
                    f"not placed: the provider's {listing} showed no {thing} from {request.from_} to "
                    f"{request.to} within {bound:g} s of the request, and no callback named the attempt",
                    now,
                )
                report.not_placed += 1
                report.looked_up -= 1
                continue
            why = (
                f"the provider request timed out after sending, and the provider's {listing} showed no {thing} "
                f"from {request.from_} to {request.to} within {bound:g} s"
                if answer is None
                else f"the provider request timed out after sending, and the provider's {listing} could not be "
                f"read: {type(answer).__name__}: {answer}"
            )
            transitions.fail_unknown(attempt, event, now, why)
            report.failed_unknown += 1
            report.looked_up -= 1
        session.flush()


def _settle_expired(
    session: Session,
    *,
    now: datetime,
    call_lease: timedelta,
    limit: int,
    dedupes: set[str],
    resend_within: timedelta | None,
    listers: set[str],
    lookup: CallLookup | None,
) -> tuple[ReconcileReport, _Questions]:
    """Everything a reconcile pass can decide without the provider; the sent calls to ask about, the unknown
    requests to send again and the ones to look up in the provider's call list come back."""
    report = ReconcileReport()
    questions = _Questions()
    checks, resends, lookups = questions.checks, questions.resends, questions.lookups
    events = session.scalars(
        select(ScheduledEvent)
        .where(ScheduledEvent.status == EventStatus.IN_PROGRESS, ScheduledEvent.lease_expires_at < now)
        .options(WITHOUT_ATTEMPTS)
        .order_by(ScheduledEvent.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not events:
        return report, questions
    current = {  # each event's current attempt, one query for the batch
        attempt.event_id: attempt
        for attempt in session.scalars(
            select(CallAttempt)
            .join(ScheduledEvent, CallAttempt.event_id == ScheduledEvent.id)
            .where(
                ScheduledEvent.id.in_([event.id for event in events]),
                CallAttempt.attempt_number == ScheduledEvent.retry_count + ScheduledEvent.free_attempts + 1,
            )
        )
    }
    withdrawn: list[uuid.UUID] = []
    for event in events:
        attempt = current.get(event.id)
        if attempt is None or attempt.state == AttemptState.CLAIMED:
            if attempt is not None:
                withdrawn.append(attempt.id)  # never reached the provider: not part of the audit trail
                session.expire(event, ["attempts"])
            transitions.release(event, now, now=now)
            report.withdrawn += 1
            continue
        if attempt.state == AttemptState.FINISHED:
            # Outcome recorded but the event never moved (should not happen); leave a trace and fail closed.
            error = f"attempt {attempt.attempt_number} finished without settling the event"
            transitions.finish(event, EventStatus.FAILED, now, error)
            report.failed_unknown += 1
            continue
        if attempt.state == AttemptState.SENT and attempt.provider_id:
            if event.telnyx_conversation_channel == Channel.SMS_CHAT:
                if attempt.last_status == MessageStatus.SENT:
                    transitions.finish_attempt(attempt, MessageStatus.SENT, now)
                    attempt.outcome = Outcome.SENT
                    metrics.count_outcome(Channel.SMS_CHAT, Outcome.SENT, None)
                    transitions.finish(event, EventStatus.COMPLETED, now)
                    report.completed_sms += 1
                    continue
            else:
                event.lease_expires_at = now + call_lease
                checks.append(_LiveCheck(attempt.id, attempt.provider, attempt.provider_id))
                continue
        unsent = attempt.state in (AttemptState.SENDING, AttemptState.UNKNOWN)
        sent_at = attempt.attempted_at
        if unsent and sent_at is not None and attempt.provider in dedupes | listers:
            resend = attempt.provider in dedupes and resend_within is not None and now - sent_at < resend_within
            if resend or (attempt.provider in listers and lookup is not None):
                if attempt.state == AttemptState.SENDING:
                    transitions.outcome_unknown(attempt, TOOK_OVER)  # a late answer of its worker can only accept
                request = dispatch_request(attempt, event)
                if resend:
                    event.lease_expires_at = now + call_lease  # a concurrent pass leaves it alone
                    resends.append(_Resend(attempt.provider, request))
                elif lookup is not None:
                    event.lease_expires_at = now + lookup.every
                    lookups.append(_Lookup(attempt.provider, request, sent_at))
                continue
        why = (
            "the provider request timed out after sending"
            if unsent
            else "no terminal status arrived before the lease expired"
        )
        transitions.fail_unknown(attempt, event, now, why)
        report.failed_unknown += 1
    if withdrawn:
        session.execute(delete(CallAttempt).where(CallAttempt.id.in_(withdrawn)))
    if lookups:
        lookups[:] = _excluding_known_calls(session, lookups)
    session.flush()
    return report, questions


def _excluding_known_calls(session: Session, lookups: list[_Lookup]) -> list[_Lookup]:
    """Each lookup with the call ids of its event's other attempts: those calls are never this attempt's."""
    ids = [item.request.attempt_id for item in lookups]
    sibling = aliased(CallAttempt)
    rows = session.execute(
        select(CallAttempt.id, sibling.provider_id)
        .join(sibling, sibling.event_id == CallAttempt.event_id)
        .where(CallAttempt.id.in_(ids), sibling.id != CallAttempt.id, sibling.provider_id.is_not(None))
    ).all()
    known: dict[uuid.UUID, set[str]] = {}
    for attempt_id, provider_id in rows:
        if provider_id:
            known.setdefault(attempt_id, set()).add(provider_id)
    return [
        _Lookup(item.provider, item.request, item.sent_at, frozenset(known.get(item.request.attempt_id, ())))
        for item in lookups
    ]
