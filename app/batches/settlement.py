"""Settling a batch: decide the outcome, and roll back to flat when a leg failed.

Kite has no atomic basket, so "all or nothing" is built from compensation:
an open leg is cancelled; a filled (or partly filled) leg is reversed with a
MARKET order for the filled quantity; a cancel that loses the race to a fill
becomes a reversal. The batch is ROLLED_BACK only when the broker's own order
records show the batch's net filled quantity back at zero for every symbol —
the fills are what positions are made of, and counting only this batch's
orders stays right while the account trades the same symbols elsewhere.

Every leg and every reversal is an ordinary order (role `leg` / `rollback`)
placed through the same exactly-once path as a single order.

What follows from the facts (the outcome, the next rollback step, flat or not) is decided
in `app.batches.decisions`; this module reads the facts and carries the decisions out.
"""
from __future__ import annotations

import logging
import time

from sqlalchemy import select

from app.batches import decisions
from app.batches import metrics as batch_metrics
from app.batches.service import COMPLETED, FINAL_BATCH, PARTIAL, ROLLBACK_FAILED, RUNNING, batch_view, load
from app.core.db import new_session, session_scope
from app.models import Batch, Order, RollbackAction, utcnow
from app.orders.updates import channel as order_update_channel
from app.orders.updates import order_changed, publish
from app.broker.client import broker_client
from app.broker.errors import describe, is_final_rejection
from app.orders.service import new_order
from app.orders.states import CANCELLED, FINAL, QUEUED, record_event, transition
from app.orders.reconciliation import apply_broker_update
from app.core.redis_client import get_redis
from app.core.wakeups import Waiter, batch_channel, nudge

log = logging.getLogger(__name__)

PENDING, DONE, FAILED = decisions.PENDING, decisions.DONE, decisions.FAILED  # rollback action results
REVERSAL_SETTLE_S = 10.0  # how long finishing waits for reversal MARKET orders to fill


VERDICT_WAIT_S = 2.0


def await_verdict(order_id: str, account_id: str, timeout_s: float = VERDICT_WAIT_S) -> None:
    """Wait for the broker's word on a placed leg: Kite acknowledges an order before its
    risk checks, so an acknowledged leg can still be REJECTED. The postback or the
    stream usually brings the verdict within milliseconds (its order update wakes this
    wait); past `timeout_s` ask the broker."""
    deadline = time.monotonic() + timeout_s
    with Waiter(order_update_channel(account_id), needle=order_id.encode()) as waiter:
        while True:
            with new_session() as session:
                order = session.get(Order, order_id)
                if order is None or not decisions.awaits_verdict(order.status, order.broker_order_id,
                                                                 order.broker_status):
                    return
                broker_order_id = order.broker_order_id
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            waiter.wait(remaining)
    state = _broker_view(broker_client(account_id), broker_order_id)
    apply_broker_update(account_id, state, source="batch_verdict")


def leg_result(order_id: str) -> dict:
    with new_session() as session:
        order = session.get(Order, order_id)
        return {"order_id": order_id, "batch_id": order.batch_id if order else None,
                "status": order.status if order else None,
                "success": bool(order and decisions.leg_succeeded(order.status))}


def has_every_verdict(batch_id: str) -> bool:
    """True when the broker has had its word on every leg: a verdict on each placed leg,
    a final status on the others. Then the batch can be decided."""
    with new_session() as session:
        legs = session.execute(select(Order.status, Order.broker_status)
                               .where(Order.batch_id == batch_id, Order.role == "leg")).all()
    return decisions.every_verdict_in(legs)


def skip_unplaced_legs(batch_id: str, reason: str) -> None:
    """Legs never sent (buy_first after a long leg failed) end CANCELLED, with the reason."""
    changed = []
    with session_scope() as session:
        for order in session.scalars(select(Order).where(Order.batch_id == batch_id, Order.role == "leg",
                                                         Order.status == QUEUED).with_for_update()):
            transition(session, order, CANCELLED, error=reason, detail={"source": "batch"})
            changed.append(order)
    for order in changed:
        order_changed(order)


def decide(batch_id: str) -> tuple[str, list[int]]:
    """Settle the batch once (row lock): returns (status, rollback action ids to run).

    RUNNING stays RUNNING while rollback actions run; their presence marks the
    batch as taken, so a redelivered or watchdog call does nothing twice. The
    call that settles the batch wakes the requests waiting for it.
    """
    with session_scope() as session:
        status, action_ids, settled_now = _decide(session, batch_id)
    if settled_now:
        nudge(batch_channel(batch_id))  # after the commit, so the waiter reads the outcome
    return status, action_ids


def _decide(session, batch_id: str) -> tuple[str, list[int], bool]:
    batch = session.scalars(select(Batch).where(Batch.id == batch_id).with_for_update()).first()
    if batch is None or batch.status != RUNNING:
        return (batch.status if batch else "MISSING"), [], False
    if session.scalars(select(RollbackAction.id).where(RollbackAction.batch_id == batch_id)).first():
        return RUNNING, [], False
    legs = list(session.scalars(select(Order).where(Order.batch_id == batch_id, Order.role == "leg")))
    decision = decisions.decide(legs, batch.rollback_on_failure)
    batch.succeeded, batch.failed = len(decision.succeeded), len(decision.failed)
    if decision.status == COMPLETED:
        batch.status, batch.completed_at = COMPLETED, utcnow()
        return COMPLETED, [], True
    batch.error = decision.error
    if decision.settled:
        batch.status, batch.completed_at = decision.status, utcnow()
        return batch.status, [], True
    actions = [RollbackAction(batch_id=batch_id, leg_order_id=o.id, action="cancel", result=PENDING)
               for o in decision.rollback]
    session.add_all(actions)
    session.flush()
    return RUNNING, [a.id for a in actions], False


def _broker_view(kite, broker_order_id: str) -> dict:
    return kite.order_history(broker_order_id)[-1]


def finish_action(action_id: int, result: str, error: str | None = None, **changes) -> None:
    with session_scope() as session:
        action = session.get(RollbackAction, action_id)
        for key, value in changes.items():
            setattr(action, key, value)
        action.result, action.error, action.completed_at = result, error, utcnow()


def _reversal_order(action_id: int, leg: Order, quantity: int) -> str:
    """The reversing MARKET order for the action, created once (its tag makes placement exactly-once)."""
    with session_scope() as session:
        action = session.get(RollbackAction, action_id, with_for_update=True)
        if action.reversal_order_id:
            return action.reversal_order_id
        fields = decisions.reversal_fields(leg, quantity)
        reversal = new_order(leg.account_id, fields, batch_id=leg.batch_id, role="rollback")
        session.add(reversal)
        record_event(session, reversal, None, QUEUED, detail={"source": "rollback", "leg_order_id": leg.id})
        action.action, action.quantity, action.reversal_order_id = "reverse", quantity, reversal.id
        return reversal.id


def prepare_rollback(action_id: int) -> tuple[str, str | None]:
    """Cancel the leg if it is open; returns ("done", None) or ("reverse", reversal order id)."""
    with new_session() as session:
        action = session.get(RollbackAction, action_id)
        if action is None or action.result != PENDING:
            return "done", None
        if action.reversal_order_id:
            return "reverse", action.reversal_order_id
        leg = session.get(Order, action.leg_order_id)
    kite = broker_client(leg.account_id)
    state = _broker_view(kite, leg.broker_order_id)
    if decisions.needs_cancel(state):
        try:
            kite.cancel_order(leg.variety, leg.broker_order_id)
        except Exception as exc:
            if not is_final_rejection(exc):
                raise  # transient: the task retries the whole action
            log.info("cancel lost the race to a fill", extra={"order_id": leg.id, "error": describe(exc)})
        state = _broker_view(kite, leg.broker_order_id)
    apply_broker_update(leg.account_id, state, source="rollback")
    step = decisions.plan_rollback(leg.quantity, state)
    if step.action == decisions.WAIT:
        # Still live after a cancel: leave it to the retry; reversing now could double the exit.
        raise RuntimeError(f"leg {leg.id} still {state.get('status')} after cancel")
    if step.action == decisions.CANCELLED_ONLY:
        finish_action(action_id, DONE, action="cancel", quantity=step.quantity)
        return "done", None
    return "reverse", _reversal_order(action_id, leg, step.quantity)


def finish_reversal(action_id: int, reversal_id: str) -> None:
    with new_session() as session:
        reversal = session.get(Order, reversal_id)
        status, error = reversal.status, reversal.error
    finish_action(action_id, *decisions.reversal_result(status, error))


def _signed_fills(kite, orders: list[Order]) -> dict[str, int]:
    """Net filled quantity per symbol of these orders, from the broker's own records."""
    return decisions.net_fills(kite.orders(), [o.broker_order_id for o in orders])


def _all_settled(order_ids: list[str]) -> bool:
    with new_session() as session:
        statuses = session.scalars(select(Order.status).where(Order.id.in_(order_ids)))
        return all(status in FINAL for status in statuses)


def confirm_flat(batch_id: str, wait_s: float = REVERSAL_SETTLE_S) -> str:
    """ROLLED_BACK if the batch's fills net to zero at the broker (reversals given time to fill)."""
    with new_session() as session:
        batch = load(session, batch_id)
        if batch is None or batch.status in FINAL_BATCH:
            return batch.status if batch else "MISSING"
        orders = list(batch.legs)  # legs and reversals share the batch id
        account_id = batch.account_id
        failed_actions = [a for a in batch.rollback_actions if a.result != DONE]
    reversal_ids = [o.id for o in orders if o.role == "rollback"]
    deadline = time.monotonic() + wait_s
    while reversal_ids and not _all_settled(reversal_ids) and time.monotonic() < deadline:
        time.sleep(0.05)  # postbacks move reversals to COMPLETE; the broker is asked once they did
    kite = broker_client(account_id)
    net = _signed_fills(kite, orders)
    while any(net.values()) and time.monotonic() < deadline:
        time.sleep(0.5)  # stay well under the broker's 10 requests/s
        net = _signed_fills(kite, orders)
    status = decisions.rollback_outcome(net, failed_actions)
    with session_scope() as session:
        batch = session.scalars(select(Batch).where(Batch.id == batch_id).with_for_update()).first()
        if batch.status != RUNNING:
            return batch.status
        batch.status, batch.completed_at = status, utcnow()
        if status == ROLLBACK_FAILED:
            batch.error = decisions.not_flat_error(batch.error, net)
    nudge(batch_channel(batch_id))
    return status


ANNOUNCED_TTL_S = 7 * 24 * 3600


def _first_announcement(batch_id: str) -> bool:
    """Claim the batch's announcement (Redis SET NX): the chord callback, a redelivery of it
    and the watchdog may each find the batch settled."""
    try:
        return bool(get_redis().set(f"batches:announced:{batch_id}", "1", nx=True, ex=ANNOUNCED_TTL_S))
    except Exception:  # better counted twice than an alert lost
        log.warning("batch announcement not claimed", exc_info=True, extra={"batch_id": batch_id})
        return True


def announce(batch_id: str) -> dict:
    """Webhook, metrics and (for a failed rollback) an order-stream alert for a settled batch.

    Safe to call more than once (the chord callback, a redelivery, the watchdog): the webhook
    event is claimed once per batch, and metrics and the alert go out with the first call only."""
    from app.webhooks import events as webhook_events

    with new_session() as session:
        batch = load(session, batch_id)
        view = batch_view(batch)
        duration = (batch.completed_at - batch.created_at).total_seconds() if batch.completed_at else None
    event = "batch_completed" if view["status"] in (COMPLETED, PARTIAL) else "batch_rolled_back"
    webhook_events.batch_event(view["account_id"], event, view)
    if not _first_announcement(batch_id):
        return view
    batch_metrics.observe(view["status"], duration)
    if view["status"] == ROLLBACK_FAILED:
        publish(view["account_id"], view, message_type="batch_rollback_failed")
        log.error("batch rollback failed: exposure left at the broker", extra={"batch_id": batch_id})
    return view


def pending_actions(batch_id: str) -> list[int]:
    with new_session() as session:
        return list(session.scalars(select(RollbackAction.id).where(RollbackAction.batch_id == batch_id,
                                                                    RollbackAction.result == PENDING)))


def settled_legs(batch_id: str) -> bool:
    """True when no leg is still being placed (the watchdog may settle it)."""
    with new_session() as session:
        statuses = session.scalars(select(Order.status).where(Order.batch_id == batch_id, Order.role == "leg"))
        return decisions.none_being_placed(statuses)

