"""The decisions of settling a batch, apart from where their facts come from.

`app.batches.settlement` reads the legs, the rollback actions and the broker's order
records (database, broker calls), asks these functions what follows, and stores or
performs it. Nothing here touches a database, Redis or the broker.

- Is every verdict in: the broker has had its word on each leg (`every_verdict_in`).
- The outcome: COMPLETED when every leg succeeded; otherwise PARTIAL (no rollback wanted),
  ROLLED_BACK (nothing to undo), or a rollback of the legs that succeeded (`decide`).
- Rolling a leg back: cancel it while it is live; once it is not, nothing filled means the
  cancel was the rollback, a fill is reversed by a MARKET order for the filled quantity
  (`plan_rollback`, `reversal_fields`).
- Flat again: the batch's net filled quantity per symbol, from the broker's own order records,
  is zero everywhere and no action failed (`net_fills`, `rollback_outcome`).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from app.batches.service import COMPLETED, LEG_SUCCESS, PARTIAL, ROLLBACK_FAILED, ROLLED_BACK, RUNNING
from app.broker import statuses as kite_statuses
from app.orders.states import OPEN, QUEUED, SUBMITTING

# Results of a rollback action.
PENDING, DONE, FAILED = "PENDING", "DONE", "FAILED"
# Steps of rolling back one leg.
WAIT, CANCELLED_ONLY, REVERSE = "wait", "cancel", "reverse"


def leg_succeeded(status: str) -> bool:
    """A leg succeeded when the broker accepted it (a LIMIT leg may still be open)."""
    return status in LEG_SUCCESS


def awaits_verdict(status: str | None, broker_order_id: str | None, broker_status: str | None) -> bool:
    """A leg the broker acknowledged but has not yet passed or refused (Kite acknowledges an order
    before its risk checks, so an acknowledged leg can still be REJECTED)."""
    return (status is not None and bool(broker_order_id) and status in LEG_SUCCESS
            and broker_status not in kite_statuses.VERDICT)


def every_verdict_in(legs: Iterable[tuple[str, str | None]]) -> bool:
    """(status, broker status) of every leg: True when the broker has had its word on each — a
    verdict on each placed (OPEN) leg, a final status on the others. Then the batch can be decided."""
    legs = list(legs)
    return bool(legs) and all(
        broker_status in kite_statuses.VERDICT if status == OPEN else status not in (QUEUED, SUBMITTING)
        for status, broker_status in legs)


def none_being_placed(statuses: Iterable[str]) -> bool:
    """True when no leg is still being placed (the watchdog may settle the batch)."""
    return all(s not in (QUEUED, SUBMITTING) for s in statuses)


@dataclass(frozen=True)
class Decision:
    """What a batch's legs decide. `status` is final (COMPLETED, PARTIAL, ROLLED_BACK) when the batch
    settles now, RUNNING when the legs in `rollback` must be rolled back first."""

    status: str
    succeeded: tuple
    failed: tuple
    error: str | None
    rollback: tuple

    @property
    def settled(self) -> bool:
        return self.status != RUNNING


def failed_legs_error(failed: Iterable) -> str:
    """The batch's error: each failed leg's index, status and error."""
    return "; ".join(f"leg {o.leg_index}: {o.status} {o.error or ''}".strip() for o in failed)[:2000]


def decide(legs: Iterable, rollback_on_failure: bool) -> Decision:
    """The outcome of a batch whose legs (with `status`, `leg_index`, `error`) all have their verdict."""
    legs = list(legs)
    succeeded = tuple(o for o in legs if o.status in LEG_SUCCESS)
    failed = tuple(o for o in legs if o.status not in LEG_SUCCESS)
    if not failed:
        return Decision(COMPLETED, succeeded, failed, None, ())
    error = failed_legs_error(failed)
    if not rollback_on_failure or not succeeded:
        return Decision(PARTIAL if succeeded else ROLLED_BACK, succeeded, failed, error, ())
    return Decision(RUNNING, succeeded, failed, error, succeeded)


def needs_cancel(broker_state: dict) -> bool:
    """The leg is live at the broker: it may still fill, so it is cancelled before anything else."""
    return broker_state.get("status") in kite_statuses.LIVE


@dataclass(frozen=True)
class RollbackStep:
    """`wait`: still live after the cancel (retry later; reversing now could double the exit);
    `cancel`: nothing filled, the cancel was the rollback (`quantity`: the leg's);
    `reverse`: a MARKET order the other way for `quantity`, the filled quantity."""

    action: str
    quantity: int


def plan_rollback(leg_quantity: int, broker_state: dict) -> RollbackStep:
    """The next step for a leg, from the broker's view of it after any cancel."""
    filled = int(broker_state.get("filled_quantity") or 0)
    if needs_cancel(broker_state):
        return RollbackStep(WAIT, 0)
    if filled == 0:
        return RollbackStep(CANCELLED_ONLY, int(leg_quantity))
    return RollbackStep(REVERSE, filled)


def opposite(transaction_type: str) -> str:
    return "SELL" if transaction_type == "BUY" else "BUY"


def reversal_fields(leg, quantity: int) -> dict:
    """The order fields of the MARKET order that reverses `quantity` of a filled leg."""
    return {
        "exchange": leg.exchange, "tradingsymbol": leg.tradingsymbol, "instrument_token": leg.instrument_token,
        "transaction_type": opposite(leg.transaction_type), "quantity": quantity,
        "product": leg.product, "order_type": "MARKET", "variety": "regular", "validity": "DAY",
        "market_protection": -1.0,
    }


def reversal_result(status: str, error: str | None) -> tuple[str, str | None]:
    """(action result, error) once the reversal order has its status."""
    ok = status in LEG_SUCCESS
    return (DONE, None) if ok else (FAILED, f"reversal {status}: {error}")


def net_fills(broker_orders: Iterable[dict], broker_order_ids: Iterable[str | None]) -> dict[str, int]:
    """Net filled quantity per symbol (BUY positive) of the orders with these broker ids, from the
    broker's own order records: the fills are what positions are made of."""
    wanted = {i for i in broker_order_ids if i}
    net: dict[str, int] = defaultdict(int)
    for row in broker_orders:
        if str(row.get("order_id")) in wanted:
            sign = 1 if row.get("transaction_type") == "BUY" else -1
            net[row["tradingsymbol"]] += sign * int(row.get("filled_quantity") or 0)
    return dict(net)


def rollback_outcome(net: dict[str, int], failed_actions: Iterable) -> str:
    """ROLLED_BACK when the batch's fills net to zero everywhere and no action failed."""
    return ROLLED_BACK if not any(net.values()) and not list(failed_actions) else ROLLBACK_FAILED


def exposure(net: dict[str, int]) -> dict[str, int]:
    """What is left open at the broker, per symbol."""
    return {symbol: qty for symbol, qty in net.items() if qty}


def not_flat_error(previous: str | None, net: dict[str, int]) -> str:
    """The error of a ROLLBACK_FAILED batch: its legs' error and the exposure left."""
    return f"{previous or ''}; not flat after rollback: {exposure(net)}".strip("; ")[:2000]
