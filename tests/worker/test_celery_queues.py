"""Beat's periodic tasks (the reconciler first) have a queue of their own, which every worker consumes beside the
dispatch queue: behind a backlog of dispatch batches the reconciler no longer waits its turn (issue 21)."""

from __future__ import annotations

import redis

from worker.celery_app import DISPATCH_QUEUE, MAINTENANCE_QUEUE, MAINTENANCE_TASKS, app


def test_every_worker_consumes_both_queues() -> None:
    # No ``-Q`` needed: with ``task_queues`` set, a worker (``campaigns worker`` or a plain ``celery worker``)
    # consumes every queue it lists.
    assert set(app.amqp.queues) == {DISPATCH_QUEUE, MAINTENANCE_QUEUE}
    assert app.conf.task_default_queue == DISPATCH_QUEUE  # what the scheduler's backpressure counts


def test_beat_tasks_land_in_the_maintenance_queue_and_dispatch_in_its_own(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(DISPATCH_QUEUE, MAINTENANCE_QUEUE)
    try:
        with app.connection_for_write(redis_url) as connection:
            for name in MAINTENANCE_TASKS:
                app.send_task(name, connection=connection)
            app.send_task("campaigns.dispatch_attempts", args=[[]], connection=connection)
        assert client.llen(MAINTENANCE_QUEUE) == len(MAINTENANCE_TASKS)
        assert client.llen(DISPATCH_QUEUE) == 1
    finally:
        client.delete(DISPATCH_QUEUE, MAINTENANCE_QUEUE)
        client.close()
