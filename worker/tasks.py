"""Celery tasks: thin shims that open the unit of work and call the domain."""

from __future__ import annotations

import logging
import uuid

from campaigns import dispatch, importer, lifecycle
from campaigns.clock import real_seconds_to_app
from campaigns.db import unit_of_work
from worker.celery_app import app
from worker.runtime import get_runtime

log = logging.getLogger(__name__)


# Celery ships no type hints, so its decorator is untyped.
@app.task(name="campaigns.dispatch_attempts", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def dispatch_attempts(attempt_ids: list[str]) -> None:
    """Send a batch of claimed attempts, one provider request each."""
    rt = get_runtime()
    for attempt_id in attempt_ids:
        dispatch.dispatch_attempt(
            rt.sessions, uuid.UUID(attempt_id), providers=rt.providers, clock=rt.clock, settings=rt.settings
        )


@app.task(name="campaigns.reconcile", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def reconcile() -> None:
    """Settle events whose lease expired (beat)."""
    rt = get_runtime()
    with unit_of_work(rt.sessions) as session:
        report = lifecycle.reconcile_expired_leases(
            session,
            now=rt.clock.now(),
            providers=rt.providers,
            call_lease=real_seconds_to_app(rt.clock, rt.settings.call_lease_secs),
        )
    if report.withdrawn or report.failed_unknown or report.extended or report.completed_sms:
        log.info("reconciled expired leases: %s", report)


@app.task(name="campaigns.import", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def import_campaign(campaign_id: str) -> None:
    """Import a stored upload (large files); safe to redeliver."""
    rt = get_runtime()
    result = importer.run_stored_import(rt.sessions, uuid.UUID(campaign_id), now=rt.clock.now)
    log.info("import %s: %s", campaign_id, result)
