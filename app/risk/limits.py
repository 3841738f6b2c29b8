"""Each account's risk limits, checked at intake before anything is stored (app.orders.pre_trade).

A request — one order, or a batch as a whole before any leg is stored — is refused with
RiskLimitBreached (422 `risk_limit`, naming the limit) when it would breach:

- `max_lots_per_order` {underlying: lots, "*": lots}: the lots of any one order (quantity / lot size;
  an order above the freeze quantity counts whole, whatever its slices) of an underlying — a
  derivative's `name` in Kite's instrument dump ("NIFTY"), an equity its own symbol;
- `max_order_value` (₹): any one order's quantity × unit price (app.risk.limit_prices: the limit price,
  an SL-M's trigger, a MARKET order's live price); a batch's legs are each an order;
- `max_open_orders`: the account's orders not yet final in the service (an order sliced under the
  freeze quantity counts once, as the client placed it) plus the orders the request adds (one, or
  the batch's legs);
- `max_daily_loss` (₹): the day's loss reached (app.risk.daily_loss), which refuses every new order.

Cheap checks first (memory, then the database), the broker's figures last. When a figure cannot
be known the request is refused as well (RiskCheckUnavailable, 503). Requests racing each other
can each see room for themselves: the open-orders limit may be overrun by such a race.
"""
from __future__ import annotations

import logging
from decimal import Decimal

from sqlalchemy import func, select

from app.core.db import new_session
from app.market.instruments import InstrumentInfo, registry
from app.models import Order
from app.orders.states import LIVE
from app.risk.daily_loss import check_daily_loss
from app.risk.limit_errors import RiskCheckUnavailable, RiskLimitBreached
from app.risk.limit_prices import instrument_key, live_prices, own_unit_price
from app.risk.limit_store import Limits, limits_of

__all__ = ["RiskCheckUnavailable", "RiskLimitBreached", "check_modified_order", "check_order_limits"]

log = logging.getLogger(__name__)
PAISA = Decimal("0.01")


def check_order_limits(account_id: str, basket: list[dict], request: str = "order") -> None:
    """Return when the basket (Order columns: one order, or a batch's legs) is within the account's
    limits; else raise RiskLimitBreached or RiskCheckUnavailable. `request`: "order" or "batch"
    (a batch's refusal names the leg, by its index in the request)."""
    limits = limits_of(account_id)
    if not limits.any:
        return
    try:
        _check(account_id, basket, limits, request == "batch")
    except (RiskLimitBreached, RiskCheckUnavailable) as refusal:
        log.info("request refused by a risk limit", extra={
            "account_id": account_id, "request": request, "limit": refusal.limit, "error": str(refusal)})
        raise


def check_modified_order(account_id: str, order: dict) -> None:
    """A modification (PATCH) of an open order: the order as it would stand afterwards (Order columns)
    must keep within the per-order limits — lots and value. It adds no open order, and a loss already
    reached does not stop a trader lowering a quantity or moving a price."""
    limits = limits_of(account_id)
    if not (limits.max_lots_per_order or limits.max_order_value is not None):
        return
    try:
        if limits.max_lots_per_order:
            check_lots(order, limits)
        if limits.max_order_value is not None:
            _check_values(account_id, [(0, order)], limits, False)
    except (RiskLimitBreached, RiskCheckUnavailable) as refusal:
        refusal.outcome = "the order is unchanged"
        log.info("modification refused by a risk limit", extra={
            "account_id": account_id, "limit": refusal.limit, "error": str(refusal)})
        raise


def _check(account_id: str, basket: list[dict], limits: Limits, name_legs: bool) -> None:
    legs = list(enumerate(basket))
    if limits.max_lots_per_order:
        for index, leg in legs:
            check_lots(leg, limits, index if name_legs else None)
    if limits.max_open_orders is not None:
        _check_open_orders(account_id, len(basket), limits.max_open_orders)
    if limits.max_order_value is not None:
        _check_values(account_id, legs, limits, name_legs)
    check_daily_loss(account_id, limits)


def underlying_of(leg: dict, info: InstrumentInfo | None) -> str:
    """What the lots limit is keyed by: a derivative's underlying, else the instrument's own symbol."""
    if info is not None and info.is_derivative and info.name:
        return info.name.upper()
    return leg["tradingsymbol"].upper()


def check_lots(leg: dict, limits: Limits, leg_index: int | None = None) -> None:
    """RiskLimitBreached when the order carries more lots of its underlying than the limits allow."""
    info = registry().by_symbol(leg["exchange"], leg["tradingsymbol"])
    underlying = underlying_of(leg, info)
    allowed = limits.lots_limit(underlying)
    if allowed is None:
        return
    lot_size = max(1, info.lot_size if info is not None else 1)
    lots = leg["quantity"] // lot_size
    if lots > allowed:
        raise RiskLimitBreached(
            "max_lots_per_order", allowed, lots,
            f"{lots} lots of {underlying} in one order (quantity {leg['quantity']}, lot size {lot_size}), "
            f"above the account's limit of {allowed} lots per order", underlying=underlying, leg=leg_index)


def open_orders(account_id: str) -> int:
    """The account's orders not final yet, a sliced order counted once (its parent, not its slices).
    Live statuses listed, so the status index serves it however long the account's history."""
    with new_session() as session:
        return session.scalar(select(func.count()).select_from(Order).where(
            Order.account_id == account_id, Order.status.in_(LIVE), Order.parent_id.is_(None))) or 0


def _check_open_orders(account_id: str, adding: int, allowed: int) -> None:
    already = open_orders(account_id)
    if already + adding > allowed:
        raise RiskLimitBreached(
            "max_open_orders", allowed, already + adding,
            f"the account has {already} open orders and this request adds {adding}, above its limit of "
            f"{allowed} open orders")


def _check_values(account_id: str, legs: list[tuple[int, dict]], limits: Limits, name_legs: bool) -> None:
    unpriced = [leg for _, leg in legs if own_unit_price(leg) is None]
    market = live_prices(account_id, unpriced) if unpriced else {}
    for index, leg in legs:
        unit = own_unit_price(leg)
        if unit is None:
            unit = market[instrument_key(leg)]
        value = (unit * leg["quantity"]).quantize(PAISA)
        if value > limits.max_order_value:
            priced = "at the live price" if leg["order_type"] == "MARKET" else "at its price"
            raise RiskLimitBreached(
                "max_order_value", limits.max_order_value, value,
                f"{instrument_key(leg)} × {leg['quantity']} {priced} {unit} is worth ₹{value:,.2f}, above the "
                f"account's limit of ₹{limits.max_order_value:,.2f} per order",
                leg=index if name_legs else None)
