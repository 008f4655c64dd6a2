"""Sending one batch of claimed attempts, each at most once: commit ``sending``, call the provider, record what
happened (DESIGN.md §2.3).

A use case over three domains: the lifecycle's bookkeeping (``campaigns.lifecycle``, one transaction before the
requests and one after), the provider (``campaigns.telephony``), and the do-not-contact list, which learns of a
recipient the provider blocks (Telnyx messaging error 40300). A refusal for the provider's rate backs the whole
provider off, and a refusal of the account itself (a rejected API key, a missing connection or messaging
profile) holds it (``lifecycle.holds``): the attempt is withdrawn and its event waits, nothing fails. It owns its
units of work, so no row stays locked while a request is on the wire.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from campaigns import lifecycle, logs, suppression
from campaigns.clock import Clock, real_seconds_to_app
from campaigns.db import unit_of_work
from campaigns.lifecycle import holds
from campaigns.settings import Settings, sending_lease
from campaigns.telephony import (
    DispatchRequest,
    DispatchResult,
    OutcomeUnknown,
    PermanentProviderError,
    ProviderHeld,
    Providers,
    TransientProviderError,
    request_pool,
)

log = logging.getLogger(__name__)


def dispatch_attempt(
    factory: sessionmaker[Session],
    attempt_id: uuid.UUID,
    *,
    providers: Providers,
    clock: Clock,
    settings: Settings,
) -> str:
    """Dispatch the attempt at most once. Returns a short word for logs and metrics."""
    words = dispatch_attempts(factory, [attempt_id], providers=providers, clock=clock, settings=settings)
    return words[0] if words else "skipped"


def dispatch_attempts(
    factory: sessionmaker[Session],
    attempt_ids: Sequence[uuid.UUID],
    *,
    providers: Providers,
    clock: Clock,
    settings: Settings,
) -> list[str]:
    """Dispatch a batch, each attempt at most once.

    One transaction re-checks the batch (``lifecycle.begin_dispatch_many``); the requests go out concurrently,
    each marked ``sending`` in its own short transaction right before it leaves (``lifecycle.mark_sending``, which
    also re-checks cancels and provider holds), so a worker killed mid-batch leaves unknown only the requests
    actually on the wire, and the rest ``claimed`` (withdrawn with no budget spent, or sent by the redelivered
    task). One transaction records the provider ids of the accepted ones. A refusal, rejection or unknown outcome
    is recorded on its own right away. Returns one short word per attempt that was sent or tried.
    """
    with unit_of_work(factory) as session:
        requests = lifecycle.begin_dispatch_many(session, attempt_ids, now=clock.now())
    accepted: list[tuple[uuid.UUID, DispatchResult]] = []
    # Until its answer is recorded, an attempt ``sending`` is looked at once its short sending lease expires (its
    # worker is taken for dead): soon enough that a Call Control dial is re-sent within Telnyx's dedupe window.
    dispatch_lease = real_seconds_to_app(clock, sending_lease(settings))

    def send(request: DispatchRequest) -> str:
        with logs.bind(attempt_id=str(request.attempt_id)):
            adapter = providers.for_channel(request.channel)
            with unit_of_work(factory) as session:
                go = lifecycle.mark_sending(
                    session, request.attempt_id, provider=adapter.name, now=clock.now(), dispatch_lease=dispatch_lease
                )
            if not go:
                return "skipped"
            try:
                result = adapter.dispatch(request)
            except (TransientProviderError, PermanentProviderError, ProviderHeld, OutcomeUnknown) as exc:
                return _record_failure(factory, request, exc, providers=providers, clock=clock, settings=settings)
            except Exception as exc:
                # Not a classified answer (a bug, an error nobody expected): the request may have gone out.
                log.exception("provider request failed unexpectedly", extra={"attempt_id": str(request.attempt_id)})
                unknown = OutcomeUnknown(f"unexpected error while sending: {exc!r}")
                return _record_failure(factory, request, unknown, providers=providers, clock=clock, settings=settings)
            accepted.append((request.attempt_id, result))
            return "sent"

    # All at once: a batch's requests do not wait for each other, and each is committed ``sending`` only by the
    # thread about to send it.
    if len(requests) > 1:
        sends = [request_pool("dispatch", 64).submit(send, request) for request in requests]
        wait(sends)
    else:
        sends = [_settled(send, request) for request in requests]
    # Every request has settled. The accepted ones are recorded even when recording another one's failure raised
    # (the database went away): their provider ids let the reconciler ask about the calls, not fail them closed.
    if accepted:
        with unit_of_work(factory) as session:
            lifecycle.record_dispatched_many(
                session, accepted, now=clock.now(), call_lease=real_seconds_to_app(clock, settings.call_lease_secs)
            )
    return [outcome.result() for outcome in sends]


def _settled(send: Callable[[DispatchRequest], str], request: DispatchRequest) -> Future[str]:
    """``send(request)`` run here, its word or its exception kept as a finished future (as the pool's are)."""
    outcome: Future[str] = Future()
    try:
        outcome.set_result(send(request))
    except Exception as exc:
        outcome.set_exception(exc)
    return outcome


RATE_REFUSALS = frozenset({429, 503})
"""Refusals that say "too fast" (429: Telnyx 10011 API rate, 90103 dials per second) or "come back later" (503):
the whole provider backs off (``holds.note_refusal``), not only the refused event."""


def _record_failure(
    factory: sessionmaker[Session],
    request: DispatchRequest,
    exc: TransientProviderError | PermanentProviderError | ProviderHeld | OutcomeUnknown,
    *,
    providers: Providers,
    clock: Clock,
    settings: Settings,
) -> str:
    attempt_id = request.attempt_id
    provider = providers.for_channel(request.channel).name
    if isinstance(exc, ProviderHeld):
        now = clock.now()
        probe_at = now + real_seconds_to_app(clock, settings.provider_probe_secs)
        with unit_of_work(factory) as session:
            hold = holds.open_hold(session, provider, exc, now=now, probe_at=probe_at)
            holds.record_held(session, attempt_id, hold.detail, now=now)
        log.warning("provider refused the account, event waits for the hold", extra={"attempt_id": str(attempt_id)})
        return "held"
    if isinstance(exc, TransientProviderError):
        now = clock.now()
        retry_at = now + timedelta(seconds=settings.transient_backoff_secs)
        with unit_of_work(factory) as session:
            if exc.status_code in RATE_REFUSALS:
                not_before = holds.note_refusal(
                    session,
                    provider,
                    now=now,
                    base=real_seconds_to_app(clock, settings.provider_backoff_secs),
                    cap=real_seconds_to_app(clock, settings.provider_backoff_max_secs),
                )
                retry_at = max(retry_at, not_before)
            lifecycle.record_refused(session, attempt_id, str(exc), now=now, retry_at=retry_at)
        log.warning("provider refused, event back to pending", extra={"attempt_id": str(attempt_id)})
        return "refused"
    if isinstance(exc, PermanentProviderError):
        with unit_of_work(factory) as session:
            lifecycle.record_rejected(session, attempt_id, str(exc), now=clock.now())
            if exc.code == suppression.PROVIDER_BLOCK_CODE:
                suppression.record_provider_block(session, request.to, str(exc), now=clock.now())
        log.warning("provider rejected, event failed", extra={"attempt_id": str(attempt_id)})
        return "rejected"
    adapter = providers.for_channel(request.channel)
    # Where the reconciler can resolve it (Call Control re-sends within Telnyx's 60 s dedupe window; TeXML and
    # messaging look it up in the provider's records), it looks a sending lease later, not a call lease: an hour
    # later the dial could no longer be re-sent safely. A callback that names the attempt settles it before.
    resolvable = adapter.dedupes_repeats or adapter.lists_calls
    lease = sending_lease(settings) if resolvable else settings.call_lease_secs
    with unit_of_work(factory) as session:
        call_lease = real_seconds_to_app(clock, lease)
        lifecycle.record_outcome_unknown(session, attempt_id, str(exc), now=clock.now(), call_lease=call_lease)
    log.error("provider outcome unknown, not re-sending", extra={"attempt_id": str(attempt_id)})
    return "unknown"
