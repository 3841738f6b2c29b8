"""The kill switch's square-off: the broker's net positions closed with MARKET orders, round by round.

`plan` (pure): for each open net position, orders of the opposite side in the same product, MARKET with
market protection -1 (automatic), in slices no larger than the instrument's freeze quantity; short
positions (bought back) before long ones. No ten-slice cap here: getting out matters more than the
slicing rule for new risk.

A round's orders are Order rows of the service (role `square_off`, `kill_switch_id`), recorded in the same
transaction as the round's step (`record_round`): a run that takes over after a crash finds them and
drives them (`drive`) through the exactly-once path of app.orders.execution — a tag lookup before any
retry — so nothing is squared off twice. The buy-backs go first and must be final before the sells go.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from sqlalchemy import select

from app.core.db import new_session, session_scope
from app.market.freeze_quantities import freeze_quantity
from app.market.instruments import registry
from app.models import Order
from app.orders.execution import submit_order
from app.orders.reconciliation import apply_broker_update, broker_orders_by_tag
from app.orders.service import new_order
from app.orders.states import FINAL, OPEN, QUEUED, REJECTED, SUBMITTING, record_event
from app.orders.updates import order_changed
from app.kite_session.state import is_live
from app.risk.halt import SQUARE_OFF
from app.risk.kill_cancels import POLL_S, SessionDead, call, cancel_one
from app.risk.kill_record import RUNNING, KillRun, announce, find_step, new_step, view

log = logging.getLogger(__name__)

STEP = "square_off"
FILL_WAIT_S = 10.0  # a square-off order still open this long is cancelled; the next round sends the rest

Key = tuple[str, str, str]  # exchange, tradingsymbol, product


def key_of(row: dict) -> Key:
    return (str(row["exchange"]), str(row["tradingsymbol"]), str(row["product"]))


def open_positions(net: list[dict]) -> list[dict]:
    """The broker's net positions that are not flat, as the square-off records them."""
    return [{"exchange": row["exchange"], "tradingsymbol": row["tradingsymbol"], "product": row["product"],
             "instrument_token": row.get("instrument_token"), "quantity": int(row["quantity"])}
            for row in net or [] if int(row.get("quantity") or 0) != 0]


def slices(quantity: int, limit: int | None) -> list[int]:
    """`quantity` in orders of at most `limit` (a whole number of lots; None: no limit), the remainder last."""
    if not limit or quantity <= limit:
        return [quantity]
    full, rest = divmod(quantity, limit)
    return [limit] * full + ([rest] if rest else [])


def freeze_limit(exchange: str, tradingsymbol: str) -> int | None:
    info = registry().by_symbol(exchange, tradingsymbol)
    return freeze_quantity(info) if info is not None else None


def plan(positions: list[dict], limit_of: Callable[[str, str], int | None] = freeze_limit) -> list[dict]:
    """The Order columns of the orders that close `positions` (open_positions), buy-backs of short
    positions first, each position's slices together."""
    orders = []
    for position in sorted(positions, key=lambda p: p["quantity"] > 0):  # shorts (negative) first
        quantity = abs(position["quantity"])
        side = "BUY" if position["quantity"] < 0 else "SELL"
        for size in slices(quantity, limit_of(position["exchange"], position["tradingsymbol"])):
            orders.append({"exchange": position["exchange"], "tradingsymbol": position["tradingsymbol"],
                           "instrument_token": position.get("instrument_token"), "transaction_type": side,
                           "quantity": size, "product": position["product"], "order_type": "MARKET",
                           "variety": "regular", "validity": "DAY", "market_protection": -1.0})
    return orders


def expected_after(positions: list[dict], results: list[dict]) -> dict[Key, int]:
    """The net positions the broker should show once a round's fills are in."""
    expected = {key_of(p): p["quantity"] for p in positions}
    for result in results:
        sign = 1 if result["transaction_type"] == "BUY" else -1
        key = key_of(result)
        expected[key] = expected.get(key, 0) + sign * int(result.get("filled_quantity") or 0)
    return expected


def record_round(run: KillRun, round_: int, positions: list[dict]) -> list[str]:
    """Record round `round_`: its orders and its step in one transaction. A round recorded already (by an
    earlier run) is not planned again: its order ids are returned."""
    orders = plan(positions)
    created = []
    with session_scope() as session:
        operation = run.locked(session)
        steps = [dict(s) for s in operation.steps or []]
        recorded = find_step(steps, STEP, round_)
        if recorded is not None:
            return [o["id"] for o in recorded["detail"]["orders"]]
        for fields in orders:
            order = new_order(run.account_id, fields, role=SQUARE_OFF, kill_switch_id=run.kill_switch_id)
            session.add(order)
            record_event(session, order, None, QUEUED,
                         detail={"source": "kill_switch", "kill_switch_id": run.kill_switch_id, "round": round_})
            created.append(order)
        steps.append(new_step(STEP, round_, RUNNING, {"positions": positions,
                                                      "orders": [_summary(o) for o in created]}))
        run.write_steps(operation, steps)
        data = view(operation)
    for order in created:
        order_changed(order)  # on the blotter before they go out
    announce(data)
    return [order.id for order in created]


def settle(run: KillRun, kite, order_ids: list[str]) -> list[dict]:
    """The round's orders as the broker's book has them (one the service gave up on may be there after
    all: its last attempt timed out after the broker took it)."""
    book = broker_orders_by_tag(call(run, kite.orders))
    with new_session() as session:
        tags = dict(session.execute(select(Order.id, Order.tag).where(Order.id.in_(order_ids))).all())
    for order_id in order_ids:
        row = book.get(tags.get(order_id, ""))
        if row is not None:
            apply_broker_update(run.account_id, row, source="kill_switch")
    return summaries(order_ids)


def _summary(order: Order) -> dict:
    return {"id": order.id, "exchange": order.exchange, "tradingsymbol": order.tradingsymbol,
            "product": order.product, "transaction_type": order.transaction_type, "quantity": order.quantity,
            "status": order.status, "filled_quantity": order.filled_quantity or 0,
            "broker_order_id": order.broker_order_id, "error": order.error}


def summaries(order_ids: list[str]) -> list[dict]:
    with new_session() as session:
        found = {o.id: o for o in session.scalars(select(Order).where(Order.id.in_(order_ids)))}
    return [_summary(found[order_id]) for order_id in order_ids if order_id in found]


def drive(run: KillRun, kite, order_ids: list[str], limit_key: str) -> list[dict]:
    """Send the round's orders and follow them to a final status: the buy-backs first, then the sells."""
    ordered = summaries(order_ids)
    for side in ("BUY", "SELL"):
        _to_final(run, kite, [o["id"] for o in ordered if o["transaction_type"] == side], limit_key)
    return summaries(order_ids)


def _to_final(run: KillRun, kite, order_ids: list[str], limit_key: str) -> None:
    due: dict[str, float] = {}        # order id → when to send it again (after a deferral or a retry)
    open_since: dict[str, float] = {}
    cancel_asked: set[str] = set()
    while True:
        pending = [o for o in summaries(order_ids) if o["status"] not in FINAL]
        if not pending:
            return
        now = time.monotonic()
        for order in pending:
            if order["status"] in (QUEUED, SUBMITTING) and due.get(order["id"], 0.0) <= now:
                run.check()
                outcome = submit_order(order["id"], account_id=run.account_id, hold_when_session_dead=False)
                if outcome.action != "done":
                    due[order["id"]] = time.monotonic() + outcome.countdown
                elif outcome.status == REJECTED and not is_live(run.account_id):
                    raise SessionDead(outcome.error or "the broker refused the account's token")
        if any(o["status"] in (OPEN, SUBMITTING) or o["broker_order_id"] for o in pending):
            # (SUBMITTING: a lost run's placement may be at the broker: adopted, not waited out)
            _follow_book(run, kite, pending, open_since, cancel_asked, limit_key)
        run.pause(POLL_S)


def _follow_book(run: KillRun, kite, pending: list[dict], open_since: dict[str, float], cancel_asked: set[str],
                 limit_key: str) -> None:
    """Apply the broker's word on the round's orders; cancel one left open too long (a partial fill under
    market protection), so the next round squares off what is left."""
    book = broker_orders_by_tag(call(run, kite.orders))
    with new_session() as session:
        tags = dict(session.execute(select(Order.id, Order.tag).where(Order.id.in_([o["id"] for o in pending]))).all())
    now = time.monotonic()
    for order in pending:
        row = book.get(tags.get(order["id"], ""))
        if row is None:
            continue
        apply_broker_update(run.account_id, row, source="kill_switch")
        if str(row.get("status")).upper() in ("OPEN", "TRIGGER PENDING"):
            since = open_since.setdefault(order["id"], now)
            if now - since > FILL_WAIT_S and order["id"] not in cancel_asked:
                cancel_asked.add(order["id"])
                refusal = cancel_one(run, kite, row, limit_key)
                log.warning("square-off order still open: cancelled, the next round sends the rest",
                            extra={"order_id": order["id"], "refusal": refusal})
