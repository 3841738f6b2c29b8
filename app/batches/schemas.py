"""What a valid batch request is: 1–10 legs, each loaded like a single order (OrderRequestSchema)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, post_load, pre_load, validate

from app.core.config import ORDER_MAX_QUEUE_S_LIMIT
from app.orders.schemas import OrderRequestSchema

MAX_LEGS = 10
EXECUTIONS = ("parallel", "buy_first")


class LegRequestSchema(OrderRequestSchema):
    """One leg: an order, which may name its account (it must be the batch's)."""

    account_id = fields.String()

    @post_load
    def _order_columns(self, data, **kwargs):
        columns = super()._order_columns(data, **kwargs)
        return {**columns, "account_id": data["account_id"]} if "account_id" in data else columns


class _Legs(fields.List):
    """The legs, counted before any is loaded: eleven legs are refused as eleven, without looking
    up the instrument of each."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list):
            self._validate(value)
        return super()._deserialize(value, attr, data, **kwargs)


class BatchRequestSchema(Schema):
    legs = _Legs(fields.Nested(LegRequestSchema), required=True,
                 validate=validate.Length(min=1, max=MAX_LEGS, error="a batch has 1 to 10 legs"))
    rollback_on_failure = fields.Boolean(load_default=True)
    execution = fields.String(load_default="parallel", validate=validate.OneOf(EXECUTIONS))
    wait = fields.Float(load_default=10.0, validate=validate.Range(min=0, max=60))
    margin_check = fields.Boolean(load_default=True, metadata={"description": (
        "ask the broker for the basket's margin (hedges counted) first and refuse the batch (422 "
        "insufficient_margin) when it exceeds the account's available margin; false skips the check")})
    expire_after_s = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(
        min=1, max=ORDER_MAX_QUEUE_S_LIMIT,
        error=f"expire_after_s is whole seconds from 1 to {ORDER_MAX_QUEUE_S_LIMIT}"), metadata={"description": (
            "each leg's expire_after_s unless the leg gives its own (default ORDER_MAX_QUEUE_S)")})

    @post_load
    def _legs_expire_with_the_batch(self, data, **_kw):
        expire_after_s = data.pop("expire_after_s", None)
        if expire_after_s is not None:
            for leg in data["legs"]:
                leg.setdefault("expire_after_s", expire_after_s)
        return data

    @pre_load
    def _old_guide_shape(self, data, **_kw):
        # The ticker-service v2 guide called the legs "orders".
        if isinstance(data, dict) and "orders" in data and "legs" not in data:
            data = {**data, "legs": data["orders"]}
            del data["orders"]
        return data


class AdvancedBatchRequestSchema(BatchRequestSchema):
    """`POST /advanced/batch-orders`: the account travels in the body."""

    account_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


_leg_schema = LegRequestSchema()


def legs_of_account(account_id: str, legs: list[dict]) -> list[dict]:
    """Loaded legs → their Order columns; a leg naming another account is a ValidationError
    naming the leg (`legs.1.account_id`)."""
    errors = {str(index): {"account_id": [f"all legs belong to the batch's account {account_id!r}"]}
              for index, leg in enumerate(legs) if leg.get("account_id", account_id) != account_id}
    if errors:
        raise ValidationError({"legs": errors})
    return [{name: value for name, value in leg.items() if name != "account_id"} for leg in legs]


def validate_legs(legs: list, account_id: str) -> list[dict]:
    """Legs as sent → their Order columns, or ValidationError naming each bad leg and field
    (`legs.2.quantity`), for callers outside a request."""
    errors: dict[str, dict] = {}
    loaded = []
    for index, leg in enumerate(legs):
        try:
            loaded.append(_leg_schema.load(leg))
        except ValidationError as exc:
            errors[str(index)] = exc.messages
    if errors:
        raise ValidationError({"legs": errors})
    return legs_of_account(account_id, loaded)
