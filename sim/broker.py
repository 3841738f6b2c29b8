"""The paper exchange: order lifecycle, matching against the generated market, positions.

Every status change an account should hear about is handed to the `listeners`
(the ticker hub and the postback sender) as Kite's postback payload.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from .accounts import Account, Accounts, sha256_hex
from .clock import kite_time
from .errors import input_error
from .faults import Faults
from .market import Market
from .orders import (RESTING, Order, check_market_protection, check_prices, check_quantity,
                     new_trade_id, parse_order_request)

MAX_MODIFICATIONS = 25
Listener = Callable[[Account, dict], None]


class Broker:
    def __init__(self, market: Market, accounts: Accounts, faults: Faults):
        self.market = market
        self.accounts = accounts
        self.faults = faults
        self.listeners: list[Listener] = []
        self.resting: dict[str, Order] = {}
        self.placed: dict[str, int] = {}

    # ---- notifications ------------------------------------------------------------------
    def payload(self, account: Account, order: Order, status: str | None = None) -> dict:
        """Kite's postback body: the order plus user_id, unfilled_quantity, app_id and checksum."""
        data = order.snapshot()
        if status:
            data["status"] = status
        data.update(user_id=account.user_id, unfilled_quantity=data["pending_quantity"], app_id=0,
                    checksum=sha256_hex(order.order_id + data["order_timestamp"] + account.api_secret))
        return data

    def _notify(self, account: Account, order: Order, status: str | None = None) -> None:
        data = self.payload(account, order, status)
        for listener in self.listeners:
            listener(account, data)

    # ---- placing ------------------------------------------------------------------------
    def place(self, account: Account, variety: str, params: dict) -> Order:
        request = parse_order_request(variety, params, self.market)
        order = Order(account.api_key, account.user_id, request)
        account.orders[order.order_id] = order
        self.placed[account.api_key] = self.placed.get(account.api_key, 0) + 1
        order.move("VALIDATION PENDING")
        reason = self.faults.rejection(request.instrument.tradingsymbol)
        if request.instrument.is_index:
            reason = "Indices are not tradable."
        if reason:
            order.move("REJECTED", status_message=reason, status_message_raw=reason,
                       pending_quantity=0)
            self._notify(account, order)
            return order
        order.move("OPEN PENDING")
        if request.order_type in ("SL", "SL-M"):
            order.move("TRIGGER PENDING")
        else:
            order.move("OPEN")
        self.resting[order.order_id] = order
        self._notify(account, order)
        self._after_change(account, order)
        return order

    def _after_change(self, account: Account, order: Order) -> None:
        delay = self.faults.settings.fill_delay_ms
        if delay > 0:
            asyncio.get_running_loop().call_later(delay / 1000.0, self._match, account, order, True)
        else:
            self._match(account, order, True)

    # ---- modify / cancel ----------------------------------------------------------------
    def get_order(self, account: Account, order_id: str) -> Order:
        order = account.orders.get(order_id)
        if order is None:
            raise input_error("Couldn't find that `order_id`.")
        return order

    def modify(self, account: Account, variety: str, order_id: str, params: dict) -> Order:
        order = self.get_order(account, order_id)
        if order.status not in RESTING:
            raise input_error(f"Order cannot be modified as it is {order.status.lower()}.")
        if order.modifications >= MAX_MODIFICATIONS:
            raise input_error("Maximum allowed order modifications exceeded.")
        f = order.fields
        inst = order.instrument
        order_type = (params.get("order_type") or f["order_type"]).upper()
        if order_type not in ("MARKET", "LIMIT", "SL", "SL-M"):
            raise input_error("Invalid `order_type`.")

        def number(name, cast, current):
            raw = params.get(name)
            if raw in (None, ""):
                return current
            try:
                return cast(float(raw)) if cast is int else cast(raw)
            except ValueError:
                raise input_error(f"Invalid `{name}`.")

        quantity = check_quantity(number("quantity", int, f["quantity"]), inst)
        if quantity < f["filled_quantity"]:
            raise input_error("Quantity cannot be less than the filled quantity.")
        price = number("price", float, f["price"]) if order_type in ("LIMIT", "SL") else 0.0
        trigger = number("trigger_price", float, f["trigger_price"]) if order_type in ("SL", "SL-M") else 0.0
        check_prices(order_type, f["transaction_type"], price, trigger, inst.tick_size or 0.05)
        protection = check_market_protection(order_type, number("market_protection", float,
                                                                f["market_protection"] or None))
        validity = (params.get("validity") or f["validity"]).upper()
        order.request.order_type, order.request.price, order.request.trigger_price = order_type, price, trigger
        order.modifications += 1
        changes = dict(order_type=order_type, quantity=quantity, price=price, trigger_price=trigger,
                       market_protection=protection, validity=validity,
                       pending_quantity=quantity - f["filled_quantity"], modified=True)
        resting_status = order.status
        if order_type in ("LIMIT", "MARKET") and resting_status == "TRIGGER PENDING":
            resting_status = "OPEN"
        order.move("MODIFY VALIDATION PENDING")
        order.move("MODIFY PENDING")
        order.move(resting_status, **changes)
        self._notify(account, order, status="UPDATE")
        self._after_change(account, order)
        return order

    def cancel(self, account: Account, variety: str, order_id: str) -> Order:
        order = self.get_order(account, order_id)
        if order.status not in RESTING:
            raise input_error(f"Order cannot be cancelled as it is {order.status.lower()}.")
        order.move("CANCEL PENDING")
        self._cancel(account, order, None)
        return order

    def _cancel(self, account: Account, order: Order, message: str | None) -> None:
        f = order.fields
        order.move("CANCELLED", cancelled_quantity=f["pending_quantity"], pending_quantity=0,
                   status_message=message, status_message_raw=message)
        self.resting.pop(order.order_id, None)
        self._notify(account, order)

    # ---- matching -----------------------------------------------------------------------
    def match_all(self) -> None:
        """Run after every market step: triggers and limit crossings."""
        for order in list(self.resting.values()):
            self._match(self.accounts.get(order.api_key), order, False)

    def _match(self, account: Account, order: Order, arriving: bool) -> None:
        if order.status not in RESTING:
            return
        market, f = self.market, order.fields
        i = order.instrument.index
        bid, ask = market.touch(i)
        ltp = market.last_price(i)
        buy = f["transaction_type"] == "BUY"
        if order.status == "TRIGGER PENDING":
            triggered = ltp >= f["trigger_price"] if buy else ltp <= f["trigger_price"]
            if not triggered:
                return
            order.move("OPEN")
            self._notify(account, order)
        touch = ask if buy else bid
        if touch <= 0:
            fill_price = None
        elif f["order_type"] in ("MARKET", "SL-M"):
            fill_price = touch
        elif buy:
            fill_price = min(f["price"], ask) if ask <= f["price"] else None
        else:
            fill_price = max(f["price"], bid) if bid >= f["price"] else None
        if fill_price is not None:
            self._fill(account, order, fill_price)
        elif arriving and f["validity"] == "IOC":
            self._cancel(account, order, "IOC order cancelled: no match at the touch.")

    def _fill(self, account: Account, order: Order, price: float) -> None:
        f = order.fields
        quantity = f["pending_quantity"]
        filled = f["filled_quantity"] + quantity
        average = (f["average_price"] * f["filled_quantity"] + price * quantity) / filled
        order.move("COMPLETE", filled_quantity=filled, pending_quantity=0, average_price=round(average, 4))
        self.resting.pop(order.order_id, None)
        account.position(order).add_fill(f["transaction_type"], quantity, price)
        now = kite_time()
        account.trades.append({
            "trade_id": new_trade_id(), "order_id": order.order_id, "exchange": f["exchange"],
            "tradingsymbol": f["tradingsymbol"], "instrument_token": f["instrument_token"],
            "product": f["product"], "average_price": price, "quantity": quantity,
            "exchange_order_id": f["exchange_order_id"], "transaction_type": f["transaction_type"],
            "fill_timestamp": now, "order_timestamp": now[11:], "exchange_timestamp": now,
        })
        self._notify(account, order)

    # ---- views --------------------------------------------------------------------------
    def positions(self, account: Account) -> dict:
        rows = []
        for pos in account.positions.values():
            inst = self.market.instrument(pos.exchange, pos.tradingsymbol)
            rows.append(pos.as_dict(self.market.last_price(inst.index), float(self.market.close[inst.index])))
        return {"net": rows, "day": [dict(r) for r in rows]}

    def margins(self, account: Account) -> dict:
        premium = sum(p.buy_value - p.sell_value for p in account.positions.values())
        cash = 10_000_000.0
        used = max(premium, 0.0)
        segment = {
            "enabled": True, "net": round(cash - used, 2),
            "available": {"adhoc_margin": 0, "cash": cash, "opening_balance": cash,
                          "live_balance": round(cash - used, 2), "collateral": 0, "intraday_payin": 0},
            "utilised": {"debits": round(used, 2), "exposure": 0, "m2m_realised": 0, "m2m_unrealised": 0,
                         "option_premium": round(used, 2), "payout": 0, "span": 0, "holding_sales": 0,
                         "turnover": 0, "liquid_collateral": 0, "stock_collateral": 0, "delivery": 0},
        }
        return {"equity": segment, "commodity": {**segment, "enabled": False}}

