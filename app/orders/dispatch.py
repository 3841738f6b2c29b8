"""Hand order work to the Celery workers by task name (the web process never imports the tasks).

An enqueue that fails (Redis down) leaves the order QUEUED in the database; the
reconciler re-enqueues QUEUED orders whose task was lost.
"""
from __future__ import annotations

import logging

from app.core.task_client import send_untracked

log = logging.getLogger(__name__)

PLACE = "workers.tasks.orders.place_order"
MODIFY = "workers.tasks.orders.modify_order"
CANCEL = "workers.tasks.orders.cancel_order"


def _send(name: str, args: list, kwargs: dict | None = None, **options) -> bool:
    try:
        send_untracked(name, args, kwargs, **options)
        return True
    except Exception:
        log.exception("order task not enqueued; the reconciler will pick it up", extra={"task": name})
        return False


def enqueue_placement(order_id: str, account_id: str | None = None, max_attempts: int | None = None,
                      **options) -> bool:
    return _send(PLACE, [order_id], {"account_id": account_id, "max_attempts": max_attempts}, **options)


def enqueue_modification(order_id: str, account_id: str, params: dict) -> bool:
    return _send(MODIFY, [order_id, params], {"account_id": account_id})


def enqueue_cancellation(order_id: str, account_id: str) -> bool:
    return _send(CANCEL, [order_id], {"account_id": account_id})
