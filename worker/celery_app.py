"""The Celery application. Due times live in PostgreSQL: never ``eta``/``countdown`` here."""

from __future__ import annotations

from celery import Celery

from campaigns.settings import get_settings


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
        beat_schedule={
            "reconcile-expired-leases": {
                "task": "campaigns.reconcile",
                "schedule": settings.reconcile_interval_secs,
            },
        },
    )
    return app


app = make_celery()
