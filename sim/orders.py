"""Order requests checked the way Kite checks them, and the order record with its history."""
from __future__ import annotations

import copy
import itertools
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from .clock import kite_time
from .errors import input_error
from .expiries import IST
from .universe import Instrument

VARIETIES = {"regular", "amo", "co", "iceberg", "auction"}
SUPPORTED_VARIETIES = {"regular", "amo", "iceberg"}
ORDER_TYPES = {"MARKET", "LIMIT", "SL", "SL-M"}
PRODUCTS = {"CNC", "NRML", "MIS", "MTF", "CO"}
VALIDITIES = {"DAY", "IOC", "TTL"}
TAG_MAX = 20
MARKET_PROTECTION_MESSAGE = ("Market orders without market protection are not allowed via API. "
                             "Please set market protection or use a Limit order.")

RESTING = {"OPEN", "TRIGGER PENDING"}
BLOCKING = RESTING | {"AMO REQ RECEIVED"}   # statuses whose unfilled quantity blocks margin
FINAL = {"COMPLETE", "CANCELLED", "REJECTED"}

# 19-digit order ids (YYMMDD + 13 digits), unique across restarts of the broker.
_order_counter = itertools.count((time.time_ns() // 1_000_000) % 10**10 * 1000)
_trade_counter = itertools.count(int(time.time()) % 10**6 * 100)


def new_order_id() -> str:
    return datetime.now(IST).strftime("%y%m%d") + f"{next(_order_counter) % 10**13:013d}"


def new_trade_id() -> str:
    return f"{next(_trade_counter) % 10**8:08d}"


def parse_number(params: dict, name: str, cast=float, default=None):
    """A form field as a finite number (an InputException otherwise); `default` when absent."""
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = cast(raw) if cast is not int else int(float(raw))
    except (TypeError, ValueError, OverflowError):
        raise input_error(f"Invalid `{name}`.")
    if cast is float and not math.isfinite(value):
        raise input_error(f"Invalid `{name}`.")
    return value


def on_tick(value: float, tick: float) -> bool:
    return abs(round(value / tick) * tick - value) < 1e-6


def _check_tick(value: float, tick: float, what: str) -> None:
    if not on_tick(value, tick):
        raise input_error(f"Tick size for this script is {tick:g}. Kindly enter {what} in the multiple of "
                          f"tick size for this script")


@dataclass
class OrderRequest:
    instrument: Instrument
    variety: str
    transaction_type: str
    order_type: str
    product: str
    quantity: int
    price: float
    trigger_price: float
    validity: str
    validity_ttl: int | None
    disclosed_quantity: int
    market_protection: float
    tag: str | None


def check_quantity(quantity: int | None, instrument: Instrument) -> int:
    if quantity is None or quantity <= 0:
        raise input_error("Invalid `quantity`.")
    if instrument.lot_size and quantity % instrument.lot_size:
        raise input_error(f"Quantity should be a multiple of lot size ({instrument.lot_size}).")
    return quantity


def check_prices(order_type: str, transaction_type: str, price: float, trigger: float, tick: float) -> None:
    if order_type in ("LIMIT", "SL"):
        if price <= 0:
            raise input_error("Invalid `price`. Price is required for LIMIT and SL orders.")
        _check_tick(price, tick, "price")
    if order_type in ("SL", "SL-M"):
        if trigger <= 0:
            raise input_error("Invalid `trigger_price`. Trigger price is required for SL and SL-M orders.")
        _check_tick(trigger, tick, "trigger price")
    if order_type == "SL":
        if transaction_type == "BUY" and trigger > price:
            raise input_error("Trigger price for stoploss buy orders should be less than or equal to the limit price.")
        if transaction_type == "SELL" and trigger < price:
            raise input_error("Trigger price for stoploss sell orders should be greater than or equal to "
                              "the limit price.")


def check_market_protection(order_type: str, protection: float | None) -> float:
    if order_type in ("MARKET", "SL-M") and not protection:
        raise input_error(MARKET_PROTECTION_MESSAGE)
    protection = protection or 0.0
    if protection != -1 and not 0 <= protection <= 100:
        raise input_error("Invalid `market_protection`. Use -1 (automatic) or a percentage from 0 to 100.")
    return protection


def parse_order_request(variety: str, params: dict, market) -> OrderRequest:
    """Validate a place request like Kite: any problem is an InputException (HTTP 400)."""
    if variety not in VARIETIES:
        raise input_error(f"Invalid `variety`: {variety}.")
    if variety not in SUPPORTED_VARIETIES:
        raise input_error(f"Variety `{variety}` is not supported by the paper broker.")
    exchange = (params.get("exchange") or "").upper()
    symbol = params.get("tradingsymbol") or ""
    if not exchange:
        raise input_error("Invalid `exchange`.")
    if not symbol:
        raise input_error("Invalid `tradingsymbol`.")
    instrument = market.instrument(exchange, symbol)
    if instrument is None:
        raise input_error(f"Invalid `tradingsymbol`: {exchange}:{symbol} is not a known instrument.")
    transaction_type = (params.get("transaction_type") or "").upper()
    if transaction_type not in ("BUY", "SELL"):
        raise input_error("Invalid `transaction_type`.")
    order_type = (params.get("order_type") or "").upper()
    if order_type not in ORDER_TYPES:
        raise input_error("Invalid `order_type`.")
    product = (params.get("product") or "").upper()
    if product not in PRODUCTS:
        raise input_error("Invalid `product`.")
    if instrument.exchange == "NFO" and product not in ("NRML", "MIS"):
        raise input_error(f"Product `{product}` is not allowed for F&O. Use NRML or MIS.")
    validity = (params.get("validity") or "DAY").upper()
    if validity not in VALIDITIES:
        raise input_error("Invalid `validity`.")
    validity_ttl = parse_number(params, "validity_ttl", int)
    if validity == "TTL" and not (validity_ttl and 1 <= validity_ttl <= 1440):
        raise input_error("Invalid `validity_ttl`. Use whole minutes from 1 to 1440.")
    quantity = check_quantity(parse_number(params, "quantity", int), instrument)
    price = parse_number(params, "price", float, 0.0)
    trigger = parse_number(params, "trigger_price", float, 0.0)
    tick = instrument.tick_size or 0.05
    check_prices(order_type, transaction_type, price, trigger, tick)
    protection = check_market_protection(order_type, parse_number(params, "market_protection", float))
    tag = params.get("tag") or None
    if tag is not None and len(tag) > TAG_MAX:
        raise input_error(f"Invalid `tag`. Tag can be at most {TAG_MAX} characters.")
    disclosed = parse_number(params, "disclosed_quantity", int, 0)
    return OrderRequest(instrument, variety, transaction_type, order_type, product, quantity,
                        price if order_type in ("LIMIT", "SL") else 0.0,
                        trigger if order_type in ("SL", "SL-M") else 0.0,
                        validity, validity_ttl, disclosed, protection, tag)


@dataclass
class Order:
    """One order at the broker; `history` keeps a snapshot of every status it went through."""
    api_key: str
    user_id: str
    request: OrderRequest
    order_id: str = field(default_factory=new_order_id)
    fields: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    placed_at: float = field(default_factory=time.time)
    modifications: int = 0
    expires_at: float | None = None   # TTL validity, on the session clock
    book_seen: int = -1               # the book refresh this order last took liquidity from
    fill_delayed: bool = False        # waiting out the faults' fill_delay_ms: market steps do not fill it
    iceberg: object = None            # sim.iceberg.Iceberg when this is one of its legs

    def __post_init__(self) -> None:
        r = self.request
        self.fields = {
            "placed_by": self.user_id, "order_id": self.order_id, "exchange_order_id": None,
            "parent_order_id": None, "status": "PUT ORDER REQ RECEIVED", "status_message": None,
            "status_message_raw": None, "order_timestamp": kite_time(self.placed_at),
            "exchange_update_timestamp": None, "exchange_timestamp": None, "variety": r.variety,
            "modified": False, "exchange": r.instrument.exchange, "tradingsymbol": r.instrument.tradingsymbol,
            "instrument_token": r.instrument.instrument_token, "order_type": r.order_type,
            "transaction_type": r.transaction_type, "validity": r.validity, "validity_ttl": r.validity_ttl,
            "product": r.product, "quantity": r.quantity, "disclosed_quantity": r.disclosed_quantity,
            "price": r.price, "trigger_price": r.trigger_price, "average_price": 0.0, "filled_quantity": 0,
            "pending_quantity": r.quantity, "cancelled_quantity": 0, "market_protection": r.market_protection,
            "meta": {}, "tag": r.tag, "tags": [r.tag] if r.tag else [], "guid": uuid.uuid4().hex[:20],
        }
        self.history.append(self.snapshot())

    @property
    def status(self) -> str:
        return self.fields["status"]

    @property
    def blocks_margin(self) -> bool:
        return self.status in BLOCKING and self.fields["pending_quantity"] > 0

    @property
    def instrument(self) -> Instrument:
        return self.request.instrument

    def snapshot(self) -> dict:
        return copy.deepcopy(self.fields)

    def move(self, status: str, **changes) -> None:
        """Enter a new status and record it in the history."""
        self.fields.update(changes, status=status)
        if status not in ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING"):
            now = kite_time()
            if self.fields["exchange_order_id"] is None and status not in ("REJECTED",):
                self.fields["exchange_order_id"] = f"{self.order_id[-16:]}"
                self.fields["exchange_timestamp"] = now
            if self.fields["exchange_order_id"] is not None:
                self.fields["exchange_update_timestamp"] = now
        self.history.append(self.snapshot())
