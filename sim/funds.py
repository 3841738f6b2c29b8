"""An account's funds: what its positions and open orders block, what is left, and Kite's RMS check.

Blocked margin = the portfolio margin (sim/margins.py) of the open positions at their average prices
and the open orders' unfilled quantities at their prices. Open orders never lower it (Kite blocks for
an open order even when it would hedge), so it is the larger of positions alone and positions with
orders. Realised profit or loss of closed trades adds to or takes from the cash.
"""
from __future__ import annotations

from .errors import KiteError
from .margins import Leg, Margin, portfolio_margin

DEFAULT_CASH = 1_000_000.0   # ₹10,00,000

RMS_MESSAGE = ("Insufficient funds. Required margin is {required:.2f} but available margin is "
               "{available:.2f}. Check the orderbook for open orders.")
RMS_RAW = ("RMS:Margin Exceeds,Required:{required:.2f}, Available:{available:.2f} for entity account-{user_id} "
           "across exchange across segment across product ")
MARGIN_EXCEPTION = "Insufficient funds. Required margin is {required:.2f} but available margin is {available:.2f}."


class Funds:
    def __init__(self, market):
        self.market = market
    def spots(self) -> dict[str, float]:
        """Each underlying's spot (index or stock) at its last price."""
        return {inst.underlying: float(self.market.ltp[inst.index]) for inst in self.market.spot_instruments}

    def order_price(self, order) -> float:
        """What an open order is valued at: its limit price, else where it would trade now."""
        f = order.fields
        if f["order_type"] in ("LIMIT", "SL") and f["price"]:
            return f["price"]
        bid, ask = self.market.touch(order.instrument.index)
        touch = ask if f["transaction_type"] == "BUY" else bid
        return touch or self.market.last_price(order.instrument.index)

    def position_legs(self, account) -> list[Leg]:
        legs = []
        for pos in account.positions.values():
            if pos.quantity:
                inst = self.market.instrument(pos.exchange, pos.tradingsymbol)
                legs.append(Leg(inst, pos.quantity, pos.average_price))
        return legs

    def open_order_legs(self, account, exclude=None) -> list[Leg]:
        legs = []
        for order in account.orders.values():
            if order is exclude or not order.blocks_margin:
                continue
            f = order.fields
            sign = 1 if f["transaction_type"] == "BUY" else -1
            legs.append(Leg(order.instrument, sign * f["pending_quantity"], self.order_price(order)))
        return legs

    def blocked(self, account, extra: list[Leg] = (), exclude=None) -> Margin:
        spots = self.spots()
        positions = self.position_legs(account)
        alone = portfolio_margin(positions, spots)
        with_orders = portfolio_margin(positions + self.open_order_legs(account, exclude) + list(extra), spots)
        return with_orders if with_orders.total > alone.total else alone

    def cash(self, account) -> float:
        """Opening cash plus what closed trades realised."""
        return account.cash + sum(pos.realised for pos in account.positions.values())

    def shortfall(self, account, leg: Leg, exclude=None) -> tuple[float, float] | None:
        """(required, available) when the order does not fit in the funds, else None."""
        before = self.blocked(account, exclude=exclude).total
        after = self.blocked(account, [leg], exclude=exclude).total
        required = after - before
        available = self.cash(account) - before
        if required <= 0 or required <= available:
            return None
        return required, available

    def margin_error(self, required: float, available: float) -> KiteError:
        return KiteError(MARGIN_EXCEPTION.format(required=required, available=available), "MarginException", 400)

    def segment(self, account) -> dict:
        """`/user/margins/equity` in Kite's shape (F&O margins live in the equity segment)."""
        blocked = self.blocked(account)
        cash = self.cash(account)
        realised = cash - account.cash
        net = round(cash - blocked.total, 2)
        return {
            "enabled": True, "net": net,
            "available": {"adhoc_margin": 0, "cash": round(account.cash, 2), "opening_balance": round(account.cash, 2),
                          "live_balance": net, "collateral": 0, "intraday_payin": 0},
            "utilised": {"debits": round(blocked.total - realised, 2), "exposure": round(blocked.exposure, 2),
                         "m2m_realised": round(-realised, 2) + 0.0, "m2m_unrealised": 0,
                         "option_premium": round(blocked.option_premium, 2), "payout": 0,
                         "span": round(blocked.span, 2), "holding_sales": 0, "turnover": 0,
                         "liquid_collateral": 0, "stock_collateral": 0, "delivery": 0},
        }

    def user_margins(self, account) -> dict:
        equity = self.segment(account)
        commodity = {**self.segment_empty(), "enabled": False}
        return {"equity": equity, "commodity": commodity}

    @staticmethod
    def segment_empty() -> dict:
        zero = dict.fromkeys(("debits", "exposure", "m2m_realised", "m2m_unrealised", "option_premium", "payout",
                              "span", "holding_sales", "turnover", "liquid_collateral", "stock_collateral",
                              "delivery"), 0)
        return {"enabled": True, "net": 0,
                "available": {"adhoc_margin": 0, "cash": 0, "opening_balance": 0, "live_balance": 0,
                              "collateral": 0, "intraday_payin": 0},
                "utilised": zero}
