"""Orders queue: place, modify and cancel orders at the broker; reconcile them with it.

The exactly-once logic lives in app.orders.execution (modify and cancel in
app.orders.changes, reconciliation in app.orders.reconciliation); these tasks turn
its outcome into Celery's own retry. Attempts are counted in the database (the
claim), not by Celery, so `max_retries` is unbounded here and a rate-limit
deferral spends no attempt: a placement waits for its reserved send slot as a
deferred task (a countdown of at most its expiry, ORDER_MAX_QUEUE_S_LIMIT), once.

Redelivery budget (Redis visibility timeout, celeryconfig): a message is held
at most task_time_limit + broker timeout + the longest countdown below.
`longest_hold_s()` computes it; tests assert it stays well under the timeout.
"""
from __future__ import annotations

from app.broker.rate_limit import MINUTE_WINDOW_S
from app.core.config import ORDER_MAX_QUEUE_S_LIMIT, get_settings
from app.orders import metrics as order_metrics
from app.orders import reconciliation
from app.orders.attempts import submission_lease_s
from app.orders.changes import change_order
from app.orders.execution import submit_order
from app.orders.reconciliation import queued_lost_after_s
from workers.celery_app import celery_app

TASK_OPTIONS = dict(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)


def longest_countdown_s() -> float:
    """The longest a retry, lease wait or rate-limit deferral (until a send slot, which comes before the
    order's expiry or not at all) can be scheduled ahead."""
    settings = get_settings()
    return max(settings.order_retry_cap_s, submission_lease_s(settings) + 0.1, MINUTE_WINDOW_S,
               ORDER_MAX_QUEUE_S_LIMIT)


def longest_hold_s() -> float:
    settings = get_settings()
    return float(celery_app.conf.task_time_limit) + settings.broker_timeout_s + longest_countdown_s()


def _follow(task, outcome, count_retry: bool = True):
    if outcome.action == "retry" and count_retry:
        order_metrics.count_retry()
    if outcome.action in ("retry", "defer"):
        raise task.retry(countdown=max(0.0, min(outcome.countdown, longest_countdown_s())))
    return {"status": outcome.status, "error": outcome.error}


@celery_app.task(name="workers.tasks.orders.place_order", **TASK_OPTIONS)
def place_order(self, order_id: str, account_id: str | None = None, max_attempts: int | None = None):
    """Place one order exactly once (see app.orders.execution.submit_order)."""
    outcome = submit_order(order_id, max_attempts=max_attempts, account_id=account_id)
    return _follow(self, outcome)


@celery_app.task(name="workers.tasks.orders.modify_order", **TASK_OPTIONS)
def modify_order(self, order_id: str, params: dict, account_id: str | None = None, attempt: int = 1):
    outcome = change_order(order_id, "modify", params, attempt)
    if outcome.action == "retry":
        order_metrics.count_retry()
        raise self.retry(countdown=outcome.countdown, kwargs={"account_id": account_id, "attempt": attempt + 1})
    return _follow(self, outcome)


@celery_app.task(name="workers.tasks.orders.cancel_order", **TASK_OPTIONS)
def cancel_order(self, order_id: str, account_id: str | None = None, attempt: int = 1):
    outcome = change_order(order_id, "cancel", None, attempt)
    if outcome.action == "retry":
        order_metrics.count_retry()
        raise self.retry(countdown=outcome.countdown, kwargs={"account_id": account_id, "attempt": attempt + 1})
    return _follow(self, outcome)


@celery_app.task(name="workers.tasks.orders.reconcile_open_orders", acks_late=True, ignore_result=True)
def reconcile_open_orders(queued_lost_after: float | None = None) -> dict:
    """Beat, every few seconds: repair missed broker updates; expire unsent orders past their expiry whose
    task is gone; re-enqueue orders whose enqueue failed."""
    return reconciliation.reconcile_all(queued_lost_after)


__all__ = ["place_order", "modify_order", "cancel_order", "reconcile_open_orders", "longest_hold_s",
           "queued_lost_after_s"]
