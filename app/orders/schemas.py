"""What a valid order request is: Kite's rules checked before anything is enqueued.

OrderRequestSchema loads a request body into the order's columns (what the service stores);
batch legs nest it. ValidationError messages are keyed by field name (→ 422).
"""
from __future__ import annotations

from decimal import Decimal

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema

from app.core.config import ORDER_MAX_QUEUE_S_LIMIT
from app.market.instrument_refresh import refresh_for_unknown_symbol
from app.market.instruments import InstrumentInfo, registry
from app.orders.slicing import TooManySlices, slice_plan

TRANSACTION_TYPES = ("BUY", "SELL")
PRODUCTS = ("CNC", "NRML", "MIS", "MTF")
DERIVATIVE_PRODUCTS = ("NRML", "MIS")
ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
VARIETIES = ("regular", "amo")
VALIDITIES = ("DAY", "IOC", "TTL")
# kiteconnect's modify_order takes no validity_ttl: a modification cannot make an order TTL.
MODIFIABLE_VALIDITIES = ("DAY", "IOC")
TTL_MINUTES = (1, 1440)  # Kite's validity_ttl: whole minutes, up to a day
PRICED = ("LIMIT", "SL")
TRIGGERED = ("SL", "SL-M")
PROTECTED = ("MARKET", "SL-M")  # Kite refuses these through the API without market protection
TAG_MAX = 20
MAX_QUANTITY = 10_000_000
MAX_PRICE = 1e9

_UPPER = ("exchange", "transaction_type", "product", "order_type", "validity")


def _upper(data):
    if isinstance(data, dict):
        data = dict(data)
        for name in _UPPER:
            if isinstance(data.get(name), str):
                data[name] = data[name].strip().upper()
        if isinstance(data.get("variety"), str):
            data["variety"] = data["variety"].strip().lower()
        if isinstance(data.get("tradingsymbol"), str):
            data["tradingsymbol"] = data["tradingsymbol"].strip()
    return data


# Of a tick: what float arithmetic leaves on a computed price (0.05 * 3 is 0.15000000000000002).
TICK_TOLERANCE = Decimal("1e-6")


def on_tick(value: float, tick: float) -> bool:
    """`value` is a whole number of ticks, one at least. In decimal, from each float as written
    (its shortest repr): 1e-320 is no tick at all, not zero ticks near enough to pass as one."""
    steps = Decimal(repr(value)) / Decimal(repr(tick))
    whole = steps.to_integral_value()
    return whole >= 1 and abs(steps - whole) <= TICK_TOLERANCE


def _price_field(**kw):
    return fields.Float(allow_nan=False, validate=validate.Range(min=0, max=MAX_PRICE, min_inclusive=False), **kw)


def _check_prices(order_type: str, data: dict, tick: float | None, errors: dict) -> None:
    """Price needed for LIMIT/SL, trigger for SL/SL-M, both on the instrument's tick."""
    price, trigger = data.get("price"), data.get("trigger_price")
    if order_type in PRICED and price is None:
        errors.setdefault("price", []).append(f"price is required for {order_type} orders")
    if order_type in TRIGGERED and trigger is None:
        errors.setdefault("trigger_price", []).append(f"trigger_price is required for {order_type} orders")
    if tick:
        if order_type in PRICED and price is not None and not on_tick(price, tick):
            errors.setdefault("price", []).append(f"price must be a positive multiple of the tick size {tick:g}")
        if order_type in TRIGGERED and trigger is not None and not on_tick(trigger, tick):
            errors.setdefault("trigger_price", []).append(
                f"trigger_price must be a positive multiple of the tick size {tick:g}")
    if order_type == "SL" and price is not None and trigger is not None:
        buy = data.get("transaction_type") == "BUY"
        if buy and trigger > price:
            errors.setdefault("trigger_price", []).append("trigger_price of a stop-loss BUY must not exceed price")
        if not buy and trigger < price:
            errors.setdefault("trigger_price", []).append("trigger_price of a stop-loss SELL must not be below price")


def _check_validity_ttl(data: dict, errors: dict) -> None:
    """validity_ttl goes with validity TTL, and only with it."""
    ttl = data.get("validity_ttl")
    if data.get("validity") == "TTL" and ttl is None:
        errors.setdefault("validity_ttl", []).append(
            f"validity_ttl is required for TTL orders: whole minutes from {TTL_MINUTES[0]} to {TTL_MINUTES[1]}")
    if data.get("validity") != "TTL" and ttl is not None:
        errors.setdefault("validity_ttl", []).append("validity_ttl is only for TTL orders (validity TTL)")


def _check_protection(value, errors: dict) -> None:
    if value is not None and value != -1 and not 0 < value <= 100:
        errors.setdefault("market_protection", []).append("use -1 (automatic) or a percentage above 0 up to 100")


class OrderRequestSchema(Schema):
    """One order as a client sends it (Kite's order parameters) → its Order columns."""

    class Meta:
        unknown = RAISE

    error_messages = {"type": "an order must be a JSON object"}

    exchange = fields.String(required=True, validate=validate.Length(min=1, max=16))
    tradingsymbol = fields.String(required=True, validate=validate.Length(min=1, max=64))
    transaction_type = fields.String(required=True, validate=validate.OneOf(TRANSACTION_TYPES))
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_QUANTITY))
    product = fields.String(required=True, validate=validate.OneOf(PRODUCTS))
    order_type = fields.String(required=True, validate=validate.OneOf(ORDER_TYPES))
    price = _price_field(load_default=None, allow_none=True)
    trigger_price = _price_field(load_default=None, allow_none=True)
    variety = fields.String(load_default="regular", validate=validate.OneOf(VARIETIES))
    validity = fields.String(load_default="DAY", validate=validate.OneOf(VALIDITIES))
    validity_ttl = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(
        min=TTL_MINUTES[0], max=TTL_MINUTES[1],
        error=f"validity_ttl is whole minutes from {TTL_MINUTES[0]} to {TTL_MINUTES[1]}"))
    disclosed_quantity = fields.Integer(load_default=None, allow_none=True, strict=True,
                                        validate=validate.Range(min=0, max=MAX_QUANTITY))
    market_protection = fields.Float(load_default=None, allow_none=True, allow_nan=False)
    tag = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=TAG_MAX))
    expire_after_s = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(
        min=1, max=ORDER_MAX_QUEUE_S_LIMIT,
        error=f"expire_after_s is whole seconds from 1 to {ORDER_MAX_QUEUE_S_LIMIT}"), metadata={"description": (
            "seconds the order may wait to be sent (default ORDER_MAX_QUEUE_S, 30): unsent by then it ends "
            "EXPIRED, never placed late")})

    @pre_load
    def _normalise(self, data, **_kw):
        return _upper(data)

    @validates_schema
    def _check_against_instrument(self, data, **_kw):
        errors: dict = {}
        info = registry().by_symbol(data["exchange"], data["tradingsymbol"])
        if info is None and refresh_for_unknown_symbol():
            info = registry().by_symbol(data["exchange"], data["tradingsymbol"])
        if info is None:
            raise ValidationError({"tradingsymbol": [
                f"{data['exchange']}:{data['tradingsymbol']} is not a known instrument"]})
        if info.is_derivative:
            if data["quantity"] % info.lot_size:
                errors.setdefault("quantity", []).append(
                    f"quantity must be a multiple of the lot size {info.lot_size}")
            if data["product"] not in DERIVATIVE_PRODUCTS:
                errors.setdefault("product", []).append("F&O orders take product NRML or MIS")
            elif not errors:
                self._check_freeze_quantity(info, data["quantity"], errors)
        if data.get("disclosed_quantity") and data["disclosed_quantity"] > data["quantity"]:
            errors.setdefault("disclosed_quantity", []).append("disclosed_quantity must not exceed quantity")
        _check_prices(data["order_type"], data, info.tick_size, errors)
        _check_validity_ttl(data, errors)
        _check_protection(data.get("market_protection"), errors)
        if errors:
            raise ValidationError(errors)

    def _check_freeze_quantity(self, info: InstrumentInfo, quantity: int, errors: dict) -> None:
        """Above the freeze quantity the service slices the order (app.orders.slicing), up to ten slices."""
        try:
            slice_plan(info, quantity)
        except TooManySlices as exc:
            errors.setdefault("quantity", []).append(str(exc))

    @post_load
    def _order_columns(self, data, **_kw):
        return order_columns(data)


def _money(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(round(value, 2)))


def order_columns(data: dict) -> dict:
    """A loaded order request → the normalised Order columns (instrument as the registry names it)."""
    info = registry().by_symbol(data["exchange"], data["tradingsymbol"])
    order_type = data["order_type"]
    protection = data.get("market_protection")
    if order_type in PROTECTED and protection is None:
        protection = -1.0  # automatic protection; Kite refuses 0 for MARKET and SL-M
    columns = {
        "exchange": info.exchange,
        "tradingsymbol": info.tradingsymbol,
        "instrument_token": info.instrument_token,
        "transaction_type": data["transaction_type"],
        "quantity": data["quantity"],
        "product": data["product"],
        "order_type": order_type,
        "variety": data["variety"],
        "validity": data["validity"],
        "price": _money(data.get("price")) if order_type in PRICED else None,
        "trigger_price": _money(data.get("trigger_price")) if order_type in TRIGGERED else None,
        "disclosed_quantity": data.get("disclosed_quantity"),
        "market_protection": protection,
        "client_tag": data.get("tag"),
    }
    if data["validity"] == "TTL":
        # Only TTL orders carry it: every other order's request hash (its Idempotency-Key
        # check) stays what it was before validity_ttl existed.
        columns["validity_ttl"] = data["validity_ttl"]
    if data.get("expire_after_s") is not None:
        columns["expire_after_s"] = data["expire_after_s"]  # likewise: only when asked for
    return columns


_order_schema = OrderRequestSchema()
_lenient_order_schema = OrderRequestSchema(unknown=EXCLUDE)


def validate_order(payload, ignore_unknown: bool = False) -> dict:
    """An order as sent → its Order columns, or ValidationError (for callers outside a request)."""
    return (_lenient_order_schema if ignore_unknown else _order_schema).load(payload)


class ModifyRequestSchema(Schema):
    """A PATCH of an OPEN order: the fields to change (checked against the order by the service)."""

    class Meta:
        unknown = RAISE

    error_messages = {"type": "a modification must be a JSON object"}

    quantity = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_QUANTITY))
    price = _price_field(allow_none=True)
    trigger_price = _price_field(allow_none=True)
    order_type = fields.String(validate=validate.OneOf(ORDER_TYPES))
    validity = fields.String(validate=validate.OneOf(MODIFIABLE_VALIDITIES))
    disclosed_quantity = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_QUANTITY))
    market_protection = fields.Float(allow_none=True, allow_nan=False)

    @pre_load
    def _normalise(self, data, **_kw):
        return _upper(data)

    @validates_schema
    def _not_empty(self, data, **_kw):
        if not data:
            raise ValidationError({"_schema": ["give at least one of: " + ", ".join(sorted(self.fields))]})


_modify_schema = ModifyRequestSchema()


def validate_modification(order, payload) -> dict:
    """A modification as sent, checked against the order it changes (for callers outside a request)."""
    return check_modification(order, _modify_schema.load(payload))


def check_modification(order, changes: dict) -> dict:
    """Loaded changes (ModifyRequestSchema) checked against the order they change → the
    parameters for kite.modify_order."""
    info = registry().by_symbol(order.exchange, order.tradingsymbol)
    merged = {
        "transaction_type": order.transaction_type,
        "order_type": changes.get("order_type", order.order_type),
        "quantity": changes.get("quantity", order.quantity),
        "price": changes.get("price", float(order.price) if order.price is not None else None),
        "trigger_price": changes.get("trigger_price",
                                     float(order.trigger_price) if order.trigger_price is not None else None),
    }
    errors: dict = {}
    if info is not None and info.is_derivative and merged["quantity"] % info.lot_size:
        errors.setdefault("quantity", []).append(f"quantity must be a multiple of the lot size {info.lot_size}")
    if merged["quantity"] < (order.filled_quantity or 0):
        errors.setdefault("quantity", []).append("quantity must not be below the filled quantity")
    _check_prices(merged["order_type"], merged, info.tick_size if info else None, errors)
    _check_protection(changes.get("market_protection"), errors)
    if errors:
        raise ValidationError(errors)
    params = {k: v for k, v in changes.items() if v is not None}
    if merged["order_type"] in PROTECTED and "market_protection" not in params:
        params["market_protection"] = order.market_protection if order.market_protection else -1
    for name in ("price", "trigger_price"):
        if name in params:
            params[name] = float(_money(params[name]))
    return params
