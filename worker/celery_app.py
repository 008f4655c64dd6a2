"""The Celery application. Due times live in PostgreSQL: never ``eta``/``countdown`` here."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from campaigns.settings import Settings, get_settings, sending_lease
from campaigns.telephony import RESEND_WINDOW_SECS


def reconcile_every(settings: Settings) -> float:
    """Real seconds between two reconciler runs: ``RECONCILE_INTERVAL_SECS``, or less. An attempt left ``sending``
    by a dead worker is looked at once its sending lease expires, and a Call Control dial is re-sent only within
    ``RESEND_WINDOW_SECS`` of its request; beat runs the reconciler at least twice in between (every 12.5 s with
    the defaults), never more often than every second."""
    room = RESEND_WINDOW_SECS - sending_lease(settings)
    return min(settings.reconcile_interval_secs, max(1.0, room / 2))


DISPATCH_QUEUE = "celery"
"""Celery's default queue: the dispatch batches (the scheduler's backpressure counts them, ``MAX_QUEUED_BATCHES``)."""
MAINTENANCE_QUEUE = "campaigns.maintenance"
"""Beat's periodic tasks. Behind a backlog of dispatch batches in the same queue the reconciler waited its turn,
while the leases it settles were expiring (issue 21); in a queue of its own a worker takes its messages in turn
with the dispatch queue's (kombu's Redis transport rotates the queues it consumes after each message)."""
MAINTENANCE_TASKS = (
    "campaigns.reconcile",
    "campaigns.probe_providers",
    "campaigns.purge_webhook_receipts",
    "campaigns.recurring_tick",
)


def make_celery() -> Celery:
    settings = get_settings()
    app = Celery("campaigns", broker=settings.redis_url or "redis://127.0.0.1:6379/0", include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        # Every worker consumes both (a plain ``celery worker`` too: with ``task_queues`` set, it is the default).
        task_default_queue=DISPATCH_QUEUE,
        task_queues={name: {"exchange": name, "routing_key": name} for name in (DISPATCH_QUEUE, MAINTENANCE_QUEUE)},
        task_routes={name: {"queue": MAINTENANCE_QUEUE} for name in MAINTENANCE_TASKS},
        beat_schedule={
            "reconcile-expired-leases": {
                "task": "campaigns.reconcile",
                "schedule": reconcile_every(settings),
            },
            "probe-held-providers": {
                "task": "campaigns.probe_providers",
                # Often enough that a probe runs within a few seconds of its time (the task is one UPDATE of a
                # tiny table when nothing is held); each hold is probed every CAMPAIGNS_PROVIDER_PROBE_SECS.
                "schedule": min(settings.provider_probe_secs, 5.0),
                "options": {"expires": min(settings.provider_probe_secs, 5.0)},
            },
            "purge-webhook-receipts": {
                "task": "campaigns.purge_webhook_receipts",
                "schedule": settings.webhook_receipt_purge_secs,
                "options": {"expires": settings.webhook_receipt_purge_secs},
            },
            "recurring-tick": {
                "task": "campaigns.recurring_tick",
                "schedule": settings.recurring_tick_secs,
                # A tick nobody picked up in time is dropped, not replayed in a burst (the next one does its work).
                "options": {"expires": settings.recurring_tick_secs},
            },
        },
    )
    return app


app = make_celery()


@worker_process_init.connect  # type: ignore[untyped-decorator]  # Celery ships no type hints
def _warm_up_child(**_: Any) -> None:
    """A prefork child starts: build its runtime before its first task (``campaigns worker`` does it for threads)."""
    from worker.runtime import warm_up

    try:
        warm_up()
    except Exception:  # the database may be down at start: the first task will build it and report
        logging.getLogger(__name__).warning("warm-up failed; the first task will retry", exc_info=True)


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]  # Celery ships no type hints
def _forget_child_gauges(**_: Any) -> None:
    """A prefork child is exiting: drop its live gauges from the multiprocess metrics directory."""
    from worker.metrics_server import mark_process_dead

    mark_process_dead(os.getpid())
