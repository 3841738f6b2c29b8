"""Validation of a batch request: every leg is validated like a single order first."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from app.orders.schemas import validate_order

MAX_LEGS = 10
EXECUTIONS = ("parallel", "buy_first")


class BatchRequestSchema(Schema):
    legs = fields.List(fields.Dict(), required=True,
                       validate=validate.Length(min=1, max=MAX_LEGS, error="a batch has 1 to 10 legs"))
    rollback_on_failure = fields.Boolean(load_default=True)
    execution = fields.String(load_default="parallel", validate=validate.OneOf(EXECUTIONS))
    wait = fields.Float(load_default=10.0, validate=validate.Range(min=0, max=60))

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


def validate_legs(legs: list, account_id: str) -> list[dict]:
    """The legs as order fields; ValidationError names each bad leg and field (`legs.2.quantity`)."""
    errors: dict[str, dict] = {}
    validated = []
    for index, leg in enumerate(legs):
        if isinstance(leg, dict) and "account_id" in leg:
            if leg["account_id"] != account_id:
                errors[str(index)] = {"account_id": [f"all legs belong to the batch's account {account_id!r}"]}
                continue
            leg = {k: v for k, v in leg.items() if k != "account_id"}
        try:
            validated.append(validate_order(leg))
        except ValidationError as exc:
            errors[str(index)] = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    if errors:
        raise ValidationError({"legs": errors})
    return validated
