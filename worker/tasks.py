"""Celery tasks: thin shims that open the unit of work and call the domain."""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import timedelta

from campaigns import campaign, dispatch, lifecycle, logs, metrics, webhooks
from campaigns import importing as importer
from campaigns.clock import app_to_real, real_seconds_to_app
from campaigns.db import unit_of_work
from campaigns.settings import sending_lease
from campaigns.telephony import RESEND_WINDOW_SECS
from worker.celery_app import app
from worker.runtime import get_runtime

log = logging.getLogger(__name__)


# Celery ships no type hints, so its decorator is untyped.
@app.task(name="campaigns.dispatch_attempts", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def dispatch_attempts(attempt_ids: list[str]) -> None:
    """Send a batch of claimed attempts, one provider request each (one commit before and one after the batch)."""
    rt = get_runtime()
    dispatch.dispatch_attempts(
        rt.sessions, [uuid.UUID(a) for a in attempt_ids], providers=rt.providers, clock=rt.clock, settings=rt.settings
    )


@app.task(name="campaigns.reconcile", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def reconcile() -> None:
    """Settle events whose lease expired (beat)."""
    rt = get_runtime()
    report = lifecycle.reconcile_expired_leases(
        rt.sessions,
        now=rt.clock.now(),
        providers=rt.providers,
        call_lease=real_seconds_to_app(rt.clock, rt.settings.call_lease_secs),
        resend_within=real_seconds_to_app(rt.clock, RESEND_WINDOW_SECS),
        lookup=lifecycle.CallLookup(
            every=real_seconds_to_app(rt.clock, sending_lease(rt.settings)),
            until=real_seconds_to_app(rt.clock, rt.settings.unknown_lookup_secs),
            provider_time=functools.partial(app_to_real, rt.clock),
            redial_not_found=rt.settings.redial_not_found,
        ),
        callback_grace=real_seconds_to_app(rt.clock, rt.settings.callback_grace_secs),
    )
    for action in metrics.RECONCILE_ACTIONS:
        if getattr(report, action):
            metrics.RECONCILED.labels(action).inc(getattr(report, action))
    if any(getattr(report, action) for action in metrics.RECONCILE_ACTIONS):
        log.info("reconciled expired leases: %s", report)
    with unit_of_work(rt.sessions) as session:  # finished campaigns stop counting as active
        completed = campaign.complete_finished_campaigns(session, now=rt.clock.now())
    if completed:
        log.info("campaigns completed: %d", completed)


@app.task(name="campaigns.probe_providers", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def probe_providers() -> None:
    """Probe every held provider account whose probe is due; an accepted probe resumes its dispatch (beat)."""
    from campaigns.lifecycle import holds

    rt = get_runtime()
    for report in holds.probe_held(rt.sessions, rt.providers, clock=rt.clock, settings=rt.settings):
        log.info("probe of provider %s: %s", report.provider, report.answer)


@app.task(name="campaigns.purge_webhook_receipts", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def purge_webhook_receipts() -> None:
    """Erase the bodies of webhook receipts past their retention, a batch per transaction (beat)."""
    rt = get_runtime()
    retention = timedelta(days=rt.settings.webhook_receipt_retention_days)
    total = 0
    while True:
        with unit_of_work(rt.sessions) as session:
            erased = webhooks.purge_receipt_bodies(session, now=rt.clock.now(), retention=retention)
        total += erased
        if erased < webhooks.PURGE_BATCH:
            break
    if total:
        log.info("webhook bodies past retention erased: %d", total)


@app.task(name="campaigns.import", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def import_campaign(campaign_id: str) -> None:
    """Import a stored upload (large files); safe to redeliver."""
    rt = get_runtime()
    with logs.bind(campaign_id=campaign_id):
        result = importer.run_stored_import(rt.sessions, uuid.UUID(campaign_id), now=rt.clock.now)
        log.info("import %s: %s", campaign_id, result)


@app.task(name="campaigns.recurring_tick", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def recurring_tick() -> None:
    """Sync the recurring definition files and run every definition that is due (beat); safe to run anywhere."""
    from campaigns import recurring

    rt = get_runtime()
    recurring.tick(rt.sessions, now=rt.clock.now, directory=rt.settings.recurring_dir)
