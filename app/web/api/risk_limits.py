"""Each account's risk limits (admin key): `GET/PUT /accounts/{id}/limits`. What they refuse and how:
app.risk.limits; the daily P&L shown beside them: app.risk.daily_loss."""
from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

from marshmallow import Schema, ValidationError, fields, validate

from app.risk import daily_loss
from app.risk.limit_store import ON_BREACH, REJECT, account_limits, replace_limits
from app.web.auth import require_admin
from app.web.blueprint import Blueprint

blp = Blueprint("risk_limits", __name__, description="Risk limits per account", object_bodies=True)

UNDERLYING = validate.Regexp(r"^(\*|[A-Z0-9][A-Z0-9&_.-]{0,31})$", error=(
    "an underlying as Kite names it, in upper case (e.g. NIFTY), or * for every underlying not named"))
PAISA = Decimal("0.01")
MAX_RUPEES = Decimal("100000000000")  # ₹10,000 crore: far above any account, well within the column
MAX_LOTS = 100_000
MAX_OPEN_ORDERS = 100_000
MAX_UNDERLYINGS = 500


def _too_many():
    raise ValidationError(f"at most {MAX_UNDERLYINGS} underlyings")


class Rupees(fields.Number):
    """A positive amount in rupees, to the paisa: a JSON number (not a string), at most 2 decimals."""

    num_type = Decimal

    def __init__(self, **kwargs) -> None:  # the bounds, for the OpenAPI document (checked below too)
        super().__init__(validate=validate.Range(min=0, min_inclusive=False, max=MAX_RUPEES), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError("a number of rupees")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError("a finite number of rupees")
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise ValidationError("a number of rupees") from None
        if not amount.is_finite() or amount <= 0 or amount > MAX_RUPEES:  # bounded before it is rounded
            raise ValidationError(f"a positive amount, at most {MAX_RUPEES:,}")
        if amount != amount.quantize(PAISA):
            raise ValidationError("rupees to the paisa: at most 2 decimals")
        return amount.quantize(PAISA)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else float(value)


class LimitsRequestSchema(Schema):
    """The account's whole set of limits: a limit left out (or null) is removed."""

    max_lots_per_order = fields.Dict(
        keys=fields.String(validate=UNDERLYING),
        values=fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_LOTS)),
        allow_none=True, load_default=None, validate=lambda lots: len(lots) <= MAX_UNDERLYINGS or _too_many(),
        metadata={"maxProperties": MAX_UNDERLYINGS, "description": 'lots per order by underlying, e.g. {"NIFTY": 10, "BANKNIFTY": 5, "*": 2}; '
                                 '"*": every underlying not named (without it those have no lots limit)'})
    max_order_value = Rupees(allow_none=True, load_default=None, metadata={
        "description": "₹ per order: quantity × limit price (SL-M: trigger price; MARKET: live price); "
                       "each leg of a batch is an order"})
    max_open_orders = fields.Integer(strict=True, allow_none=True, load_default=None,
                                     validate=validate.Range(min=1, max=MAX_OPEN_ORDERS), metadata={
                                         "description": "orders not final yet, with those the request adds"})
    max_daily_loss = Rupees(allow_none=True, load_default=None, metadata={
        "description": "₹ lost today (realised + open positions marked to market, Kite's m2m) at which new "
                       "orders are refused"})
    on_breach = fields.String(load_default=REJECT, validate=validate.OneOf(ON_BREACH), metadata={
        "description": "reject: refuse new orders; kill: also start the kill switch once, when the daily loss "
                       "limit is reached"})


class DailyPnlSchema(Schema):
    pnl = fields.Float(metadata={"description": "₹ today: realised + open positions marked to market"})
    loss = fields.Float(metadata={"description": "the figure the daily loss limit compares: −pnl, or 0"})
    realised = fields.Float()
    unrealised = fields.Float(metadata={"description": "pnl − realised: open positions marked to market"})
    positions = fields.Integer()
    at = fields.String(metadata={"description": "when it was read from the broker"})
    age_s = fields.Float()


class LimitsSchema(Schema):
    account_id = fields.String()
    max_lots_per_order = fields.Dict(keys=fields.String(), values=fields.Integer(), allow_none=True)
    max_order_value = fields.Float(allow_none=True)
    max_open_orders = fields.Integer(allow_none=True)
    max_daily_loss = fields.Float(allow_none=True)
    on_breach = fields.String()
    updated_at = fields.String(allow_none=True)
    updated_by = fields.String(allow_none=True)
    daily_pnl = fields.Nested(DailyPnlSchema, allow_none=True, metadata={
        "description": "the day's P&L the daily loss limit last saw (kept a few minutes; null when none)"})


def _view(account_id: str, limits) -> dict:
    figure = daily_loss.cached(account_id)
    return {"account_id": account_id, **limits.view(), "daily_pnl": figure.view() if figure else None}


@blp.route("/accounts/<account_id>/limits", methods=["GET"])
@blp.response(200, LimitsSchema)
@blp.errors(403, 404)
def get_limits(account_id):
    """The account's risk limits (all null and `on_breach: reject` when none are set), and the daily P&L
    the daily loss limit last saw."""
    require_admin()
    return _view(account_id, account_limits(account_id))


@blp.route("/accounts/<account_id>/limits", methods=["PUT"])
@blp.arguments(LimitsRequestSchema)
@blp.response(200, LimitsSchema)
@blp.errors(403, 404)
def put_limits(body, account_id):
    """Replace the account's risk limits (admin key); they apply to the next request."""
    principal = require_admin()
    return _view(account_id, replace_limits(account_id, body, principal.key_id))
