"""Net and day positions built from fills (no overnight carry: net == day in the paper broker)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Position:
    tradingsymbol: str
    exchange: str
    instrument_token: int
    product: str
    buy_quantity: int = 0
    buy_value: float = 0.0
    sell_quantity: int = 0
    sell_value: float = 0.0

    def add_fill(self, transaction_type: str, quantity: int, price: float) -> None:
        if transaction_type == "BUY":
            self.buy_quantity += quantity
            self.buy_value += quantity * price
        else:
            self.sell_quantity += quantity
            self.sell_value += quantity * price

    @property
    def quantity(self) -> int:
        return self.buy_quantity - self.sell_quantity

    @property
    def buy_price(self) -> float:
        return self.buy_value / self.buy_quantity if self.buy_quantity else 0.0

    @property
    def sell_price(self) -> float:
        return self.sell_value / self.sell_quantity if self.sell_quantity else 0.0

    @property
    def average_price(self) -> float:
        """The average of the side that makes the open quantity."""
        qty = self.quantity
        return self.buy_price if qty > 0 else self.sell_price if qty < 0 else 0.0

    @property
    def realised(self) -> float:
        return min(self.buy_quantity, self.sell_quantity) * (self.sell_price - self.buy_price)

    def as_dict(self, last_price: float, close_price: float) -> dict:
        buy_price, sell_price = self.buy_price, self.sell_price
        qty = self.quantity
        average = self.average_price
        realised = self.realised
        unrealised = qty * (last_price - average) if qty else 0.0
        pnl = self.sell_value - self.buy_value + qty * last_price
        value = self.sell_value - self.buy_value
        return {
            "tradingsymbol": self.tradingsymbol, "exchange": self.exchange,
            "instrument_token": self.instrument_token, "product": self.product, "quantity": qty,
            "overnight_quantity": 0, "multiplier": 1, "average_price": round(average, 4),
            "close_price": close_price, "last_price": last_price, "value": round(value, 2),
            "pnl": round(pnl, 2), "m2m": round(pnl, 2), "unrealised": round(unrealised, 2),
            "realised": round(realised, 2),
            "buy_quantity": self.buy_quantity, "buy_price": round(buy_price, 4),
            "buy_value": round(self.buy_value, 2), "buy_m2m": round(self.buy_value, 2),
            "sell_quantity": self.sell_quantity, "sell_price": round(sell_price, 4),
            "sell_value": round(self.sell_value, 2), "sell_m2m": round(self.sell_value, 2),
            "day_buy_quantity": self.buy_quantity, "day_buy_price": round(buy_price, 4),
            "day_buy_value": round(self.buy_value, 2), "day_sell_quantity": self.sell_quantity,
            "day_sell_price": round(sell_price, 4), "day_sell_value": round(self.sell_value, 2),
        }
