"""Batches queue: legs in parallel as a Celery chord, settlement, rollback to flat.

    chord(group(place_leg × legs), settle_batch)                      execution "parallel"
    chord(group(place_leg × BUY legs), place_sell_legs) → chord(...)  execution "buy_first"
        (started by app.batches.launch, by task name)
    settle_batch → chord(group(rollback_leg × placed legs), finish_rollback)   on failure

Leg tasks return a result instead of raising for business failures (a rejected
leg is a result), so the callback always runs. The last leg to hear the broker's
verdict decides the batch itself, a chord hop sooner; the callback then finds it
decided and announces the outcome (deciding and announcing are both idempotent).
Transient failures retry with
Celery's retry and a shorter budget than single orders. `settle_stuck_batches`
(beat) is the watchdog for a chord that can no longer finish.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from celery import chord, group
from sqlalchemy import select

from app.batches import settlement
from app.batches.launch import PLACE_LEG, PLACE_SELL_LEGS, SETTLE_BATCH
from app.batches.service import FINAL_BATCH, RUNNING
from app.core.db import new_session
from app.models import Batch, utcnow
from app.orders.attempts import backoff_s
from app.orders.execution import submit_order
from workers.celery_app import celery_app

log = logging.getLogger(__name__)

LEG_MAX_ATTEMPTS = 3  # a batch waits for its slowest leg: fail fast, roll back, let the trader retry
LEG_RETRY_CAP_S = 2.0
ROLLBACK_MAX_RETRIES = 8
WATCHDOG_AFTER_S = 60.0  # a RUNNING batch this old with no leg in flight is settled by the watchdog

TASK_OPTIONS = dict(bind=True, acks_late=True, reject_on_worker_lost=True)


@celery_app.task(name=PLACE_LEG, max_retries=None, **TASK_OPTIONS)
def place_leg(self, order_id: str, account_id: str) -> dict:
    """One leg through the single-order exactly-once path, with the batch's shorter budget."""
    outcome = submit_order(order_id, max_attempts=LEG_MAX_ATTEMPTS, account_id=account_id,
                           hold_when_session_dead=False)  # a batch does not wait for a login: it rolls back
    if outcome.action in ("retry", "defer"):
        raise self.retry(countdown=min(outcome.countdown, LEG_RETRY_CAP_S))
    settlement.await_verdict(order_id, account_id)
    result = settlement.leg_result(order_id)
    if result["batch_id"] and settlement.has_every_verdict(result["batch_id"]):
        # The last leg to hear back decides the batch a chord hop before the callback could
        # (deciding is idempotent under a row lock); the callback then announces the outcome.
        start_rollback(result["batch_id"], settlement.decide(result["batch_id"])[1])
    return result


@celery_app.task(name=PLACE_SELL_LEGS, **TASK_OPTIONS)
def place_sell_legs(self, buy_results: list, batch_id: str, sells: list[str], account_id: str) -> dict:
    """buy_first: short legs go out only once every long leg is in."""
    if all(r.get("success") for r in buy_results):
        chord(group(place_leg.s(i, account_id) for i in sells), settle_batch.s(batch_id)).delay()
        return {"placed_sells": len(sells)}
    settlement.skip_unplaced_legs(batch_id, "not placed: a long leg of the batch failed")
    return settle_batch.run([], batch_id)


def start_rollback(batch_id: str, action_ids: list[int]) -> None:
    """The rollback chord: every placed leg cancelled or reversed, then the check that the batch is flat."""
    if action_ids:
        chord(group(rollback_leg.s(a) for a in action_ids), finish_rollback.s(batch_id)).delay()


@celery_app.task(name=SETTLE_BATCH, **TASK_OPTIONS)
def settle_batch(self, leg_results: list, batch_id: str) -> dict:
    status, action_ids = settlement.decide(batch_id)  # a leg may have decided it already
    start_rollback(batch_id, action_ids)
    if status in FINAL_BATCH:
        settlement.announce(batch_id)
    return {"status": status}


@celery_app.task(name="workers.tasks.batches.rollback_leg", max_retries=ROLLBACK_MAX_RETRIES, **TASK_OPTIONS)
def rollback_leg(self, action_id: int) -> dict:
    """Cancel or reverse one placed leg; the reversal goes through the exactly-once path."""
    try:
        step, reversal_id = settlement.prepare_rollback(action_id)
        # Not held for a login either: a rollback reported failed must not fill hours later.
        outcome = submit_order(reversal_id, hold_when_session_dead=False) if step == "reverse" else None
    except Exception as exc:
        # Redis, the database or the broker went away (a restart, a 503): preparing is idempotent and the
        # exactly-once path makes another attempt safe, so a rollback does not give up on a blip.
        if self.request.retries >= ROLLBACK_MAX_RETRIES:
            log.error("rollback action gave up", extra={"action_id": action_id, "error": str(exc)})
            settlement.finish_action(action_id, settlement.FAILED, f"gave up: {exc}"[:500])
            return {"action_id": action_id, "result": settlement.FAILED}
        raise self.retry(countdown=backoff_s(self.request.retries + 1), exc=exc)
    if outcome is not None:
        if outcome.action in ("retry", "defer"):
            raise self.retry(countdown=min(outcome.countdown, LEG_RETRY_CAP_S))
        settlement.finish_reversal(action_id, reversal_id)
    return {"action_id": action_id, "step": step}


@celery_app.task(name="workers.tasks.batches.finish_rollback", max_retries=ROLLBACK_MAX_RETRIES, **TASK_OPTIONS)
def finish_rollback(self, results: list, batch_id: str) -> dict:
    try:
        status = settlement.confirm_flat(batch_id)
    except Exception as exc:   # the broker or Redis unavailable for the check: ask again (the watchdog is the last resort)
        raise self.retry(countdown=backoff_s(self.request.retries + 1), exc=exc)
    settlement.announce(batch_id)
    return {"status": status}


@celery_app.task(name="workers.tasks.batches.settle_stuck_batches", acks_late=True, ignore_result=True)
def settle_stuck_batches(older_than_s: float = WATCHDOG_AFTER_S) -> list[str]:
    """Watchdog (beat): settle RUNNING batches whose chord can no longer finish (worker lost, result expired)."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with new_session() as session:
        stuck = list(session.scalars(select(Batch.id).where(Batch.status == RUNNING, Batch.created_at < cutoff)))
    settled = []
    for batch_id in stuck:
        if not settlement.settled_legs(batch_id):
            continue  # a leg is still in flight; the order reconciler moves it along
        status, action_ids = settlement.decide(batch_id)
        if action_ids:
            start_rollback(batch_id, action_ids)
        elif status == RUNNING:
            # Rollback actions exist but their chord is gone: run what is pending here.
            for action_id in settlement.pending_actions(batch_id):
                rollback_leg.apply(args=[action_id])
            finish_rollback.run([], batch_id)
        elif status in FINAL_BATCH:
            settlement.announce(batch_id)
        settled.append(batch_id)
    if settled:
        log.info("watchdog settled %d stuck batch(es): %s", len(settled), ", ".join(settled),
                 extra={"batch_ids": settled})
    else:
        log.debug("watchdog: no stuck batch", extra={"running_old": len(stuck)})
    return settled
