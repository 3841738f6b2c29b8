"""GTT (good till triggered) orders: Kite's `/gtt/triggers` endpoints and the triggers firing.

A trigger belongs to the account that placed it. After every market step `GttBook.check()` looks
at the last price of each active trigger's instrument (only while the market is open, see
sim/market_hours.py):
- single: fires when the price reaches the trigger value, coming from the side of the
  `last_price` given at placement (last_price above → fires at ltp <= value; below → ltp >= value);
- two-leg (OCO): ltp <= lower fires orders[0] (the stop-loss), ltp >= upper fires orders[1] (the target).
Firing places the LIMIT order through `Broker.place(account, "regular", …)`, so it then lives like
any other order (matching, ticker and postback updates). The GTT becomes `triggered` and the fired
order's `result` records the order id, or `status: "failed"` with the reason if placing was refused.
A GTT expires (`expired`) one year after creation, on the session clock. Triggered, deleted and
expired GTTs stay in the list (our choice: the paper broker keeps them until it restarts).
"""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from . import clock, market_hours
from .clock import kite_time
from .errors import KiteError, input_error
from .expiries import IST
from .gtt_request import SINGLE, GttRequest, parse_gtt_request
from .ratelimit import OTHER
from .rest import form_params, ok

ACTIVE, TRIGGERED, DELETED, EXPIRED = "active", "triggered", "deleted", "expired"
MAX_ACTIVE_PER_ACCOUNT = 250   # Kite's limit of active GTTs per account

# Trigger ids are integers like Kite's; time-based so they stay unique across restarts.
_trigger_ids = itertools.count((time.time_ns() // 1_000_000) % 10**8)


def whole_seconds() -> float:
    """Now, to the second: Kite shows GTT times to the second, and expiry happens at the one shown."""
    return float(int(time.time()))


def one_year_after(epoch: float) -> float:
    """The same date and time a year later (29 February → 28 February), as Kite's expires_at."""
    moment = datetime.fromtimestamp(epoch, IST)
    try:
        later = moment.replace(year=moment.year + 1)
    except ValueError:
        later = moment.replace(year=moment.year + 1, day=28)
    return later.timestamp()


@dataclass
class Trigger:
    id: int
    api_key: str
    user_id: str
    request: GttRequest
    created_at: float = field(default_factory=whole_seconds)
    updated_at: float = 0.0
    expires_at: float = 0.0
    status: str = ACTIVE
    results: list = field(default_factory=list)   # per order: None, or the fired order's result

    def __post_init__(self) -> None:
        self.updated_at = self.updated_at or self.created_at
        self.expires_at = self.expires_at or one_year_after(self.created_at)
        self.results = self.results or [None] * len(self.request.orders)

    def leg_to_fire(self, ltp: float) -> int | None:
        """Which order the price `ltp` fires, if any."""
        r = self.request
        if r.type == SINGLE:
            value = r.trigger_values[0]
            crossed = ltp <= value if r.last_price > value else ltp >= value
            return 0 if crossed else None
        lower, upper = r.trigger_values
        if ltp <= lower:
            return 0
        if ltp >= upper:
            return 1
        return None

    def as_dict(self) -> dict:
        r, inst = self.request, self.request.instrument
        return {
            "id": self.id, "user_id": self.user_id, "parent_trigger": None, "type": r.type,
            "created_at": kite_time(self.created_at), "updated_at": kite_time(self.updated_at),
            "expires_at": kite_time(self.expires_at), "status": self.status,
            "condition": {"exchange": inst.exchange, "last_price": r.last_price, "tradingsymbol": inst.tradingsymbol,
                          "trigger_values": list(r.trigger_values), "instrument_token": inst.instrument_token},
            "orders": [{**order, "result": result} for order, result in zip(r.orders, self.results)],
            "meta": {},
        }


class GttBook:
    def __init__(self, market, broker, accounts):
        self.market = market
        self.broker = broker
        self.accounts = accounts
        self._by_account: dict[str, dict[int, Trigger]] = {}
        self._active: dict[int, Trigger] = {}

    # ---- the API ------------------------------------------------------------------------
    def place(self, account, params: dict) -> Trigger:
        request = parse_gtt_request(params, self.market)
        mine = self._by_account.setdefault(account.api_key, {})
        if sum(t.status == ACTIVE for t in mine.values()) >= MAX_ACTIVE_PER_ACCOUNT:
            raise input_error(f"Maximum number of active GTTs ({MAX_ACTIVE_PER_ACCOUNT}) reached. "
                              f"Delete some before placing more.")
        trigger = Trigger(next(_trigger_ids), account.api_key, account.user_id, request)
        mine[trigger.id] = trigger
        self._active[trigger.id] = trigger
        return trigger

    def get(self, account, trigger_id: str) -> Trigger:
        trigger = None
        if trigger_id.isdigit():
            trigger = self._by_account.get(account.api_key, {}).get(int(trigger_id))
        if trigger is None:
            raise input_error("Couldn't find that `trigger_id`.")
        return trigger

    def all(self, account) -> list[Trigger]:
        """Newest first, as Kite lists them."""
        return list(reversed(self._by_account.get(account.api_key, {}).values()))

    def modify(self, account, trigger_id: str, params: dict) -> Trigger:
        trigger = self._active_one(account, trigger_id, "modified")
        trigger.request = parse_gtt_request(params, self.market)
        trigger.results = [None] * len(trigger.request.orders)
        trigger.updated_at = whole_seconds()
        return trigger

    def delete(self, account, trigger_id: str) -> Trigger:
        trigger = self._active_one(account, trigger_id, "deleted")
        self._close(trigger, DELETED)
        return trigger

    def _active_one(self, account, trigger_id: str, action: str) -> Trigger:
        trigger = self.get(account, trigger_id)
        if trigger.status != ACTIVE:
            raise input_error(f"GTT cannot be {action} as it is {trigger.status}. Only active GTTs can be {action}.")
        return trigger

    def _close(self, trigger: Trigger, status: str) -> None:
        trigger.status = status
        trigger.updated_at = whole_seconds()
        self._active.pop(trigger.id, None)

    # ---- firing -------------------------------------------------------------------------
    def check(self) -> None:
        """Run after every market step: expire old triggers, fire crossed ones while the market is open."""
        now, market_open = clock.now(), market_hours.is_open()
        for trigger in list(self._active.values()):
            if now >= trigger.expires_at:
                self._close(trigger, EXPIRED)
                continue
            if not market_open:
                continue
            ltp = self.market.last_price(trigger.request.instrument.index)
            leg = trigger.leg_to_fire(ltp)
            if leg is not None:
                self._fire(trigger, leg, ltp)

    def _fire(self, trigger: Trigger, leg: int, ltp: float) -> None:
        self._close(trigger, TRIGGERED)
        account = self.accounts.get(trigger.api_key)
        order = trigger.request.orders[leg]
        params = {**order, "validity": "DAY"}
        try:
            placed = self.broker.place(account, "regular", params)
            outcome = {"status": "success", "order_id": placed.order_id, "rejection_reason": ""}
        except KiteError as err:   # refused at placement: Kite records it and keeps no order
            outcome = {"status": "failed", "order_id": "", "rejection_reason": err.message}
        trigger.results[leg] = {
            "account_id": trigger.user_id, "exchange": order["exchange"], "tradingsymbol": order["tradingsymbol"],
            "validity": "DAY", "product": order["product"], "order_type": order["order_type"],
            "transaction_type": order["transaction_type"], "quantity": order["quantity"], "price": order["price"],
            "meta": json.dumps({"app_id": 0, "gtt": trigger.id}, separators=(",", ":")),
            "timestamp": kite_time(), "triggered_at": ltp, "order_result": outcome,
        }

    def state(self) -> dict:
        counts: dict[str, int] = {}
        for mine in self._by_account.values():
            for trigger in mine.values():
                counts[trigger.status] = counts.get(trigger.status, 0) + 1
        return counts


class GttRoutes:
    """`/gtt/triggers`: registered on the Kite routes, so auth, rate limits (class OTHER) and faults apply."""

    def __init__(self, book: GttBook):
        self.book = book

    def add_to(self, app: web.Application, kite) -> None:
        for method, path, handler in (("POST", "/gtt/triggers", self.place), ("GET", "/gtt/triggers", self.list_all),
                                      ("GET", "/gtt/triggers/{trigger_id}", self.get),
                                      ("PUT", "/gtt/triggers/{trigger_id}", self.modify),
                                      ("DELETE", "/gtt/triggers/{trigger_id}", self.delete)):
            kite.register(app, method, path, handler, OTHER)

    async def place(self, request):
        trigger = self.book.place(request["account"], await form_params(request))
        return ok({"trigger_id": trigger.id})

    async def list_all(self, request):
        return ok([t.as_dict() for t in self.book.all(request["account"])])

    async def get(self, request):
        return ok(self.book.get(request["account"], request.match_info["trigger_id"]).as_dict())

    async def modify(self, request):
        trigger = self.book.modify(request["account"], request.match_info["trigger_id"], await form_params(request))
        return ok({"trigger_id": trigger.id})

    async def delete(self, request):
        trigger = self.book.delete(request["account"], request.match_info["trigger_id"])
        return ok({"trigger_id": trigger.id})
