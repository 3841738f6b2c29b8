"""Orders queue: place, modify and cancel orders at the broker; reconcile them with it.

The exactly-once logic lives in app.orders.execution; these tasks turn its
outcome into Celery's own retry. Attempts are counted in the database (the
claim), not by Celery, so `max_retries` is unbounded here and a rate-limit
deferral spends no attempt.

Redelivery budget (Redis visibility timeout, celeryconfig): a message is held
at most task_time_limit + broker timeout + the longest countdown below.
`longest_hold_s()` computes it; tests assert it stays well under the timeout.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from app import order_metrics
from app.config import load_settings
from app.db import new_session
from app.models import Order
from app.orders import dispatch
from app.orders.execution import (change_order, queued_lost_after_s, reconcile_account, submission_lease_s,
                                  submit_order)
from app.orders.states import FINAL
from app.ratelimit import MINUTE_WINDOW_S
from workers import app

log = logging.getLogger(__name__)

TASK_OPTIONS = dict(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)


def longest_countdown_s() -> float:
    """The longest a retry, lease wait or rate-limit deferral can be scheduled ahead."""
    settings = load_settings()
    return max(settings.order_retry_cap_s, submission_lease_s(settings) + 0.1, MINUTE_WINDOW_S)


def longest_hold_s() -> float:
    settings = load_settings()
    return float(app.conf.task_time_limit) + settings.broker_timeout_s + longest_countdown_s()


def _follow(task, outcome, count_retry: bool = True):
    if outcome.action == "retry" and count_retry:
        order_metrics.count_retry()
    if outcome.action in ("retry", "defer"):
        raise task.retry(countdown=max(0.0, min(outcome.countdown, longest_countdown_s())))
    return {"status": outcome.status, "error": outcome.error}


@app.task(name="workers.tasks.orders.place_order", **TASK_OPTIONS)
def place_order(self, order_id: str, account_id: str | None = None, max_attempts: int | None = None):
    """Place one order exactly once (see app.orders.execution.submit_order)."""
    outcome = submit_order(order_id, max_attempts=max_attempts, account_id=account_id)
    return _follow(self, outcome)


@app.task(name="workers.tasks.orders.modify_order", **TASK_OPTIONS)
def modify_order(self, order_id: str, params: dict, account_id: str | None = None, attempt: int = 1):
    outcome = change_order(order_id, "modify", params, attempt)
    if outcome.action == "retry":
        order_metrics.count_retry()
        raise self.retry(countdown=outcome.countdown, kwargs={"account_id": account_id, "attempt": attempt + 1})
    return _follow(self, outcome)


@app.task(name="workers.tasks.orders.cancel_order", **TASK_OPTIONS)
def cancel_order(self, order_id: str, account_id: str | None = None, attempt: int = 1):
    outcome = change_order(order_id, "cancel", None, attempt)
    if outcome.action == "retry":
        order_metrics.count_retry()
        raise self.retry(countdown=outcome.countdown, kwargs={"account_id": account_id, "attempt": attempt + 1})
    return _follow(self, outcome)


@app.task(name="workers.tasks.orders.reconcile_open_orders", acks_late=True, ignore_result=True)
def reconcile_open_orders(queued_lost_after: float | None = None) -> dict:
    """Beat, every few seconds: repair missed broker updates; re-enqueue orders whose task was lost."""
    with new_session() as session:
        account_ids = list(session.scalars(select(Order.account_id).where(Order.status.not_in(FINAL)).distinct()))
    summary = {}
    for account_id in account_ids:
        try:
            report = reconcile_account(account_id, queued_lost_after)
        except Exception as exc:  # one account's broker trouble must not stop the others
            log.warning("reconciliation failed", extra={"account_id": account_id, "error": str(exc)})
            continue
        for order_id in report["requeue"]:
            dispatch.enqueue_placement(order_id, account_id)
        summary[account_id] = {"checked": report["checked"], "updated": report["updated"],
                               "requeued": len(report["requeue"])}
    _report_reconciliation(summary)
    return summary


def _report_reconciliation(summary: dict) -> None:
    """One INFO line when the reconciler changed something; DEBUG otherwise (it runs every few seconds)."""
    repaired = sum(s["updated"] for s in summary.values())
    requeued = sum(s["requeued"] for s in summary.values())
    if not (repaired or requeued):
        log.debug("reconciler: nothing to repair", extra={"accounts": len(summary)})
        return
    accounts = sorted(a for a, s in summary.items() if s["updated"] or s["requeued"])
    done = [f"repaired {repaired} order(s)" if repaired else "", f"re-enqueued {requeued} lost" if requeued else ""]
    log.info("reconciler %s (accounts: %s)", " and ".join(d for d in done if d), ", ".join(accounts),
             extra={"repaired": repaired, "requeued": requeued, "accounts": accounts})


__all__ = ["place_order", "modify_order", "cancel_order", "reconcile_open_orders", "longest_hold_s",
           "queued_lost_after_s"]
