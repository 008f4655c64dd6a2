"""Sending one claimed attempt: commit ``sending``, call the provider, record what happened."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from campaigns import lifecycle
from campaigns.clock import Clock, real_seconds_to_app
from campaigns.db import unit_of_work
from campaigns.provider import OutcomeUnknown, PermanentProviderError, Providers, TransientProviderError
from campaigns.settings import Settings

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
    with unit_of_work(factory) as session:
        request = lifecycle.begin_dispatch(
            session,
            attempt_id,
            now=clock.now(),
            dispatch_lease=real_seconds_to_app(clock, settings.claim_lease_secs),
        )
    if request is None:
        return "skipped"
    provider = providers.for_channel(request.channel)
    try:
        result = provider.dispatch(request)
    except TransientProviderError as exc:
        now = clock.now()
        retry_at = now + timedelta(seconds=settings.transient_backoff_secs)
        with unit_of_work(factory) as session:
            lifecycle.record_refused(session, attempt_id, str(exc), now=now, retry_at=retry_at)
        log.warning("provider refused, event back to pending", extra={"attempt_id": str(attempt_id)})
        return "refused"
    except PermanentProviderError as exc:
        with unit_of_work(factory) as session:
            lifecycle.record_rejected(session, attempt_id, str(exc), now=clock.now())
        log.warning("provider rejected, event failed", extra={"attempt_id": str(attempt_id)})
        return "rejected"
    except OutcomeUnknown as exc:
        with unit_of_work(factory) as session:
            lifecycle.record_outcome_unknown(session, attempt_id, str(exc), now=clock.now())
        log.error("provider outcome unknown, not re-sending", extra={"attempt_id": str(attempt_id)})
        return "unknown"
    with unit_of_work(factory) as session:
        lifecycle.record_dispatched(
            session,
            attempt_id,
            result,
            now=clock.now(),
            call_lease=real_seconds_to_app(clock, settings.call_lease_secs),
        )
    return "sent"
