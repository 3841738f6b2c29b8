"""`POST /margins/orders` and `POST /margins/basket`: Kite's margin calculators on the sim's model.

Per order: the order alone (sim/margins.py `order_margin`), except that an order which only reduces an
open position needs nothing (Kite's calculator "considers existing positions"); no offsets across the
list. Basket: `initial` = the orders' sum without hedge benefit, `final` = the portfolio margin of the
basket (with the open positions when `consider_positions`, less what those positions already block),
`orders` = the per-order objects, `charges` = their charges added up.
"""
from __future__ import annotations

from .errors import input_error
from .margins import Leg, Margin, charges, margin_object, order_margin, portfolio_margin
from .orders import check_quantity

MAX_ORDERS = 50   # ours: bounds the work of one call


def _sum_charges(items: list[dict]) -> dict:
    total = {"transaction_tax": 0.0, "transaction_tax_type": "stt", "exchange_turnover_charge": 0.0,
             "sebi_turnover_charge": 0.0, "brokerage": 0.0, "stamp_duty": 0.0,
             "gst": {"igst": 0.0, "cgst": 0, "sgst": 0, "total": 0.0}, "total": 0.0}
    for c in items:
        for key in ("transaction_tax", "exchange_turnover_charge", "sebi_turnover_charge", "brokerage",
                    "stamp_duty", "total"):
            total[key] += c[key]
        total["gst"]["igst"] += c["gst"]["igst"]
        total["gst"]["total"] += c["gst"]["total"]
    return total


class MarginCalculator:
    def __init__(self, market, funds):
        self.market = market
        self.funds = funds

    def _leg(self, params: dict) -> tuple[Leg, str]:
        exchange = str(params.get("exchange") or "").upper()
        inst = self.market.instrument(exchange, str(params.get("tradingsymbol") or ""))
        if inst is None or inst.is_index:
            raise input_error(f"Invalid `tradingsymbol`: {exchange}:{params.get('tradingsymbol')} is not a "
                              f"tradable instrument.")
        side = str(params.get("transaction_type") or "").upper()
        if side not in ("BUY", "SELL"):
            raise input_error("Invalid `transaction_type`.")
        try:
            quantity = int(params.get("quantity") or 0)
            price = float(params.get("price") or 0)
        except (TypeError, ValueError, OverflowError):
            raise input_error("Invalid `quantity` or `price`.")
        check_quantity(quantity, inst)
        order_type = str(params.get("order_type") or "MARKET").upper()
        if order_type not in ("LIMIT", "SL") or not 0 < price < 1e9:
            bid, ask = self.market.touch(inst.index)
            price = (ask if side == "BUY" else bid) or self.market.last_price(inst.index)
        return Leg(inst, quantity if side == "BUY" else -quantity, price), side

    def _legs(self, orders: list[dict]) -> list[tuple[Leg, str]]:
        if len(orders) > MAX_ORDERS:
            raise input_error(f"At most {MAX_ORDERS} orders per margin calculation.")
        return [self._leg(o) for o in orders]

    def _reduces_position(self, account, leg: Leg) -> bool:
        for pos in account.positions.values():
            if (pos.exchange, pos.tradingsymbol) == (leg.instrument.exchange, leg.instrument.tradingsymbol):
                if pos.quantity * leg.quantity < 0 and abs(leg.quantity) <= abs(pos.quantity):
                    return True
        return False

    def _order_object(self, account, leg: Leg, side: str, compact: bool) -> dict:
        spot = self.funds.spots()[leg.instrument.underlying]
        margin = Margin() if self._reduces_position(account, leg) else order_margin(leg, spot)
        return margin_object(margin, leg.instrument, charges(leg, side), compact)

    def orders(self, account, orders: list[dict], compact: bool) -> list[dict]:
        return [self._order_object(account, leg, side, compact) for leg, side in self._legs(orders)]

    def basket(self, account, orders: list[dict], consider_positions: bool, compact: bool) -> dict:
        legs = self._legs(orders)
        spots = self.funds.spots()
        per_order = [self._order_object(account, leg, side, False) for leg, side in legs]
        initial = Margin()
        for leg, _ in legs:
            initial = initial + order_margin(leg, spots[leg.instrument.underlying])
        held = self.funds.position_legs(account) if consider_positions else []
        with_basket = portfolio_margin(held + [leg for leg, _ in legs], spots)
        before = portfolio_margin(held, spots)
        final = Margin(with_basket.span - before.span, with_basket.exposure - before.exposure,
                       with_basket.option_premium - before.option_premium)
        total_charges = _sum_charges([o["charges"] for o in per_order])
        if compact:
            per_order = [{k: o[k] for k in ("type", "tradingsymbol", "exchange", "total")} for o in per_order]
        return {"initial": margin_object(initial, compact=compact), "final": margin_object(final, compact=compact),
                "orders": per_order, "charges": total_charges}
