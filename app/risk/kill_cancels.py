"""The kill switch's cancels: orders still queued here, then every live order in the broker's own book,
and the account's active GTTs (a trigger that fires later would place an order on a halted account).

Queued orders are taken back before they reach the broker (app.risk.halt.withdraw); one inside its
broker call is waited for, and once it is OPEN the broker-side cancel takes it. The broker's order
book is read with the account's own client, so orders placed outside the service are cancelled too;
each cancel goes through the account's order rate limiter, as every order call of the account does.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from app.broker import statuses as kite_statuses
from app.broker.errors import describe, is_final_rejection
from app.broker.rate_limit import order_rate_limiter, other_calls_rate_limiter
from app.core.db import new_session
from app.kite_session.refusals import noticed
from app.models import Order
from app.orders.attempts import MAX_INLINE_RATE_WAIT_S
from app.orders.parents import PARENT
from app.orders.reconciliation import apply_broker_update, broker_orders_by_tag
from app.orders.states import CANCELLED, QUEUED, SUBMITTING
from app.risk.halt import SQUARE_OFF, withdraw
from app.risk.kill_record import KillRun

log = logging.getLogger(__name__)

POLL_S = 0.25
# Live at the broker and cancellable now; the other live statuses (pending a verdict, a modify or a
# cancel) are waited for.
CANCELLABLE = frozenset({kite_statuses.OPEN, kite_statuses.TRIGGER_PENDING, "AMO REQ RECEIVED"})
CANCEL_WAIT_S = 15.0  # live orders that will not go away in this long are reported, and the square-off goes on


class SessionDead(Exception):
    """The broker refused the account's token: nothing more can be done until a login."""


def _unsent(account_id: str) -> list[Order]:
    """The account's orders not at the broker yet (parents follow their slices; square-offs are the kill switch's)."""
    with new_session() as session:
        return list(session.scalars(select(Order).where(
            Order.account_id == account_id, Order.status.in_((QUEUED, SUBMITTING)),
            Order.role.not_in((PARENT, SQUARE_OFF)))))


def cancel_queued(run: KillRun, kite) -> dict:
    """Every order of the account still queued here withdrawn; returns the counts."""
    counts = {"cancelled": 0, "at_broker": 0}
    while True:
        orders = _unsent(run.account_id)
        if not orders:
            return counts
        book = None
        if any(o.status == SUBMITTING or o.attempts or o.error for o in orders):  # one may be at the broker
            book = broker_orders_by_tag(call(run, kite.orders))
        waiting = 0
        for order in orders:
            run.check()
            status = withdraw(order.id, book)
            if status is None:
                waiting += 1
            else:  # not cancelled: it did reach the broker, whose cancel comes next
                counts["cancelled" if status == CANCELLED else "at_broker"] += 1
        if waiting:
            run.pause(POLL_S)  # a worker is inside a broker call: its answer comes first


def live_rows(book: list[dict]) -> list[dict]:
    return [row for row in book or [] if str(row.get("status") or "").upper() in kite_statuses.LIVE]


def cancel_one(run: KillRun, kite, row: dict, limit_key: str) -> str | None:
    """Cancel one broker order within the account's order rate; None, or why the broker refused."""
    while True:
        run.check()
        slot = order_rate_limiter().acquire(limit_key, placement=False, max_wait_s=MAX_INLINE_RATE_WAIT_S)
        if slot.granted:
            break
        run.pause(min(slot.wait_s, 1.0))
    variety = row.get("variety") or "regular"
    try:
        kite.cancel_order(variety, row["order_id"], **({"parent_order_id": row["parent_order_id"]}
                                                         if variety == "co" and row.get("parent_order_id") else {}))
        return None
    except Exception as exc:
        if noticed(run.account_id, exc, "kill_switch", kite):
            raise SessionDead(describe(exc)) from None
        if is_final_rejection(exc):  # e.g. it completed meanwhile: the square-off takes its fill
            return describe(exc)
        raise


def cancel_live(run: KillRun, kite, limit_key: str, wait_s: float = CANCEL_WAIT_S, on_cancel=None) -> dict:
    """Cancel every live order in the broker's book and wait until none is live (or `wait_s` passed);
    the service's own orders follow the broker's word. Returns what was cancelled, refused, left live.
    `on_cancel(broker_order_ids)` after each cancel the broker took: the step records its progress, so a
    run cut off mid-step (its time budget, its worker) leaves a report the next run completes."""
    asked: dict[str, str | None] = {}
    waited = 0.0
    while True:
        book = call(run, kite.orders)
        live = live_rows(book)
        for row in live + [r for r in book if str(r.get("order_id")) in asked]:
            apply_broker_update(run.account_id, row, source="kill_switch")
        if not live:
            break
        for row in live:
            order_id = str(row["order_id"])
            if order_id not in asked and str(row.get("status")).upper() in CANCELLABLE:
                asked[order_id] = cancel_one(run, kite, row, limit_key)
                if on_cancel is not None and asked[order_id] is None:
                    on_cancel(sorted(o for o, refusal in asked.items() if refusal is None))
        if waited >= wait_s:
            break
        run.pause(POLL_S)
        waited += POLL_S
    return {"cancelled": sorted(o for o, refusal in asked.items() if refusal is None),
            "refused": {o: refusal for o, refusal in asked.items() if refusal is not None},
            "still_live": sorted(str(row["order_id"]) for row in live)}


def call(run: KillRun, method, *args, **kwargs):
    """A broker read for the kill switch; a refused token ends the operation (SessionDead)."""
    run.check()
    try:
        return method(*args, **kwargs)
    except Exception as exc:
        if noticed(run.account_id, exc, "kill_switch", getattr(method, "__self__", None)):
            raise SessionDead(describe(exc)) from None
        raise


def delete_active_gtts(run: KillRun, kite, limit_key: str) -> dict:
    """Delete every active GTT of the account at the broker (each call within the account's rate for
    Kite's non-order endpoints). Returns the ids deleted and those the broker refused, with why."""
    deleted, refused = [], {}
    triggers = call(run, kite.get_gtts)
    for trigger in triggers or []:
        if str(trigger.get("status") or "").lower() != "active":
            continue
        trigger_id = trigger["id"]
        while not other_calls_rate_limiter().acquire(limit_key, placement=False,
                                                     max_wait_s=MAX_INLINE_RATE_WAIT_S).granted:
            run.pause(0.2)
        try:
            call(run, kite.delete_gtt, trigger_id)
            deleted.append(trigger_id)
        except SessionDead:
            raise
        except Exception as exc:
            if not is_final_rejection(exc):  # the broker or the network: the next run deletes it
                raise
            refused[str(trigger_id)] = describe(exc)  # e.g. it triggered meanwhile: its order is cancelled above
    return {"deleted": deleted, "refused": refused}
