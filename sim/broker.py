"""The paper exchange: order lifecycle, matching against the generated market, positions.

Every status change an account should hear about is handed to the `listeners`
(the ticker hub and the postback sender) as Kite's postback payload.
"""
from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Callable

from . import clock
from . import market_hours
from .accounts import Account, Accounts, sha256_hex
from .clock import kite_time
from .errors import input_error
from .faults import Faults
from .freeze import FreezeLimits
from .funds import RMS_MESSAGE, RMS_RAW, Funds
from .iceberg import Iceberg, leg_sizes
from .margins import Leg
from .market import Market
from .matching import fill_at_book
from .orders import (RESTING, Order, OrderRequest, check_market_protection, check_prices, check_quantity,
                     new_order_id, new_trade_id, parse_number, parse_order_request)

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
        self.funds = Funds(market)
        self.freeze = FreezeLimits()

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
        """Kite's place call: validated synchronously, then RMS and the exchange (REJECTED or OPEN)."""
        request = parse_order_request(variety, params, self.market)
        market_hours.check_variety(variety)   # outside the session only AMO; inside it no AMO
        if variety == "iceberg":
            plan = Iceberg(request, leg_sizes(request, params))
            for size in plan.sizes:
                self.freeze.check(request.instrument, size)
            return self._place_iceberg_leg(account, plan)
        self.freeze.check(request.instrument, request.quantity)
        return self._enter(account, request)

    def place_autoslice(self, account: Account, variety: str, params: dict) -> dict:
        """Kite's autoslice (v2 answer): freeze-sized children; one can fail on margin while the rest are placed."""
        request = parse_order_request(variety, params, self.market)
        market_hours.check_variety(variety)
        if variety == "iceberg":
            raise input_error("Autoslice is not available for iceberg orders.")
        parent = new_order_id()
        children = []
        for size in self.freeze.slices(request.instrument, request.quantity):
            child = replace(request, quantity=size)
            shortfall = self.funds.shortfall(account, self._leg(child))
            if shortfall:
                err = self.funds.margin_error(*shortfall)
                children.append({"error": {"code": err.status, "error_type": err.error_type,
                                           "message": err.message, "data": None}})
                continue
            order = self._enter(account, child, tags=["autoslice", f"autoslice:{parent}"])
            children.append({"order_id": order.order_id})
        return {"order_id": parent, "children": children}

    def _place_iceberg_leg(self, account: Account, plan: Iceberg) -> Order | None:
        request = plan.next_request()
        if request is None:
            return None
        return self._enter(account, request, parent_order_id=plan.parent_order_id, iceberg=plan)

    def _leg(self, request: OrderRequest) -> Leg:
        """The order as a margin leg, valued at its limit price or where it would trade now."""
        inst = request.instrument
        price = request.price
        if request.order_type not in ("LIMIT", "SL") or not price:
            bid, ask = self.market.touch(inst.index)
            price = (ask if request.transaction_type == "BUY" else bid) or self.market.last_price(inst.index)
        sign = 1 if request.transaction_type == "BUY" else -1
        return Leg(inst, sign * request.quantity, price)

    def _enter(self, account: Account, request: OrderRequest, tags: list[str] = (), parent_order_id=None,
               iceberg: Iceberg | None = None) -> Order:
        order = Order(account.api_key, account.user_id, request)
        f = order.fields
        f["tags"] = f["tags"] + list(tags)
        f["parent_order_id"] = parent_order_id
        if iceberg is not None:
            order.iceberg = iceberg
            iceberg.parent_order_id = iceberg.parent_order_id or order.order_id   # the first leg's id
            f["meta"] = iceberg.meta()
        if request.validity == "TTL":
            order.expires_at = clock.now() + request.validity_ttl * 60
        account.orders[order.order_id] = order
        self.placed[account.api_key] = self.placed.get(account.api_key, 0) + 1
        order.move("VALIDATION PENDING")
        reason = self.faults.rejection(request.instrument.tradingsymbol)
        if request.instrument.is_index:
            reason = "Indices are not tradable."
        if reason:
            self._reject(account, order, reason, reason)
            return order
        shortfall = self.funds.shortfall(account, self._leg(request), exclude=order)
        if shortfall:
            required, available = shortfall
            self._reject(account, order, RMS_MESSAGE.format(required=required, available=available),
                         RMS_RAW.format(required=required, available=available, user_id=account.user_id))
            return order
        if market_hours.hold_amo(self, account, order):   # an AMO outside the session waits for the open
            return order
        self.send_to_exchange(account, order)
        return order

    def send_to_exchange(self, account: Account, order: Order) -> None:
        """A validated order reaches the exchange: OPEN PENDING → OPEN (TRIGGER PENDING for stops), then matching."""
        order.move("OPEN PENDING")
        order.move("TRIGGER PENDING" if order.request.order_type in ("SL", "SL-M") else "OPEN")
        self.resting[order.order_id] = order
        self._notify(account, order)
        self._after_change(account, order)

    def _reject(self, account: Account, order: Order, message: str, raw: str) -> None:
        order.move("REJECTED", status_message=message, status_message_raw=raw, pending_quantity=0)
        self._notify(account, order)

    def _after_change(self, account: Account, order: Order) -> None:
        delay = self.faults.settings.fill_delay_ms
        if delay > 0:
            # Market steps meanwhile must not fill it early (match_all): it waits the whole delay.
            order.fill_delayed = True
            asyncio.get_running_loop().call_later(delay / 1000.0, self._match_delayed, account, order)
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

        quantity = check_quantity(parse_number(params, "quantity", int, f["quantity"]), inst)
        self.freeze.check(inst, quantity)
        if quantity < f["filled_quantity"]:
            raise input_error("Quantity cannot be less than the filled quantity.")
        price = parse_number(params, "price", float, f["price"]) if order_type in ("LIMIT", "SL") else 0.0
        trigger = (parse_number(params, "trigger_price", float, f["trigger_price"])
                   if order_type in ("SL", "SL-M") else 0.0)
        check_prices(order_type, f["transaction_type"], price, trigger, inst.tick_size or 0.05)
        protection = check_market_protection(
            order_type, parse_number(params, "market_protection", float, f["market_protection"] or None))
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
        """The unfilled part is cancelled; a filled part stays filled (and in the position)."""
        f = order.fields
        order.move("CANCELLED", cancelled_quantity=f["pending_quantity"], pending_quantity=0,
                   status_message=message, status_message_raw=message)
        self.resting.pop(order.order_id, None)
        self._notify(account, order)

    # ---- matching -----------------------------------------------------------------------
    def match_all(self) -> None:
        """Run after every market step: lapsed TTL orders, triggers and limit crossings."""
        now = clock.now()
        for order in list(self.resting.values()):
            account = self.accounts.get(order.api_key)
            if order.expires_at is not None and now >= order.expires_at:
                self._cancel(account, order, f"Order cancelled: its validity of {order.fields['validity_ttl']} "
                                             f"minute(s) (TTL) lapsed.")
                continue
            self._match(account, order, False)

    def _match_delayed(self, account: Account, order: Order) -> None:
        order.fill_delayed = False
        self._match(account, order, True)

    def _match(self, account: Account, order: Order, arriving: bool) -> None:
        if order.status not in RESTING:
            return
        if order.fill_delayed:
            return
        if not market_hours.is_open():   # nothing trades while the market is closed
            return
        market, f = self.market, order.fields
        i = order.instrument.index
        buy = f["transaction_type"] == "BUY"
        if order.status == "TRIGGER PENDING":
            ltp = market.last_price(i)
            triggered = ltp >= f["trigger_price"] if buy else ltp <= f["trigger_price"]
            if not triggered:
                return
            order.move("OPEN")
            self._notify(account, order)
        if order.book_seen != market.book_version:
            quantity, price = fill_at_book(market, i, buy, f["order_type"], f["price"], f["pending_quantity"])
            if quantity:
                order.book_seen = market.book_version
                self._fill(account, order, quantity, price)
        if arriving and f["validity"] == "IOC" and order.status in RESTING:
            self._cancel(account, order, "IOC order cancelled: the unfilled quantity had no match at once.")

    def _fill(self, account: Account, order: Order, quantity: int, price: float) -> None:
        f = order.fields
        filled = f["filled_quantity"] + quantity
        pending = f["pending_quantity"] - quantity
        average = (f["average_price"] * f["filled_quantity"] + price * quantity) / filled
        order.move("COMPLETE" if pending == 0 else "OPEN", filled_quantity=filled, pending_quantity=pending,
                   average_price=round(average, 4))
        if pending == 0:
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
        if pending == 0 and order.iceberg is not None:
            self._place_iceberg_leg(account, order.iceberg)

    # ---- views --------------------------------------------------------------------------
    def positions(self, account: Account) -> dict:
        rows = []
        for pos in account.positions.values():
            inst = self.market.instrument(pos.exchange, pos.tradingsymbol)
            rows.append(pos.as_dict(self.market.last_price(inst.index), float(self.market.close[inst.index])))
        return {"net": rows, "day": [dict(r) for r in rows]}

    def margins(self, account: Account) -> dict:
        return self.funds.user_margins(account)
