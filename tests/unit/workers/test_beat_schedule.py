"""The beat schedule runs the periodic repairs: the reconciler, the batch watchdog, stranded webhooks."""
from __future__ import annotations

from workers.celery_app import celery_app

RECONCILE = "workers.tasks.orders.reconcile_open_orders"
SETTLE = "workers.tasks.batches.settle_stuck_batches"
REQUEUE = "workers.tasks.webhooks.requeue_stranded_deliveries"


def test_the_periodic_tasks_are_in_the_beat_schedule():
    scheduled = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    assert {RECONCILE, SETTLE, REQUEUE} <= scheduled
