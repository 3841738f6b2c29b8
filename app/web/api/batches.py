"""Batch orders: 1–10 legs placed together, rolled back to flat when one fails."""
import logging

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields

from app.web.auth import authenticate, require_account
from app.batches import service
from app.batches.launch import launch
from app.batches.schemas import AdvancedBatchRequestSchema, BatchRequestSchema
from app.web.errors import ApiError
from app.core.validation import nul_fields
from app.orders.service import mark_enqueue_failed

log = logging.getLogger(__name__)
blp = Blueprint("batches", __name__, description="Multi-leg batch orders")

IDEMPOTENCY_KEY_MAX = 128  # the column's length
IDEMPOTENCY_KEY_PARAMETER = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
    "description": "the same key gives back the first batch; with another body it is a 409",
}


def _idempotency_key() -> str | None:
    """The header as sent; 422 when blank or longer than the database keeps (not a 500)."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and (not key.strip() or len(key) > IDEMPOTENCY_KEY_MAX):
        raise ApiError(422, f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} characters",
                       details={"Idempotency-Key": [f"1-{IDEMPOTENCY_KEY_MAX} characters"]})
    return key


class LegSchema(Schema):
    order_id = fields.String()
    leg_index = fields.Integer()
    tradingsymbol = fields.String()
    transaction_type = fields.String()
    quantity = fields.Integer()
    status = fields.String()
    broker_order_id = fields.String(allow_none=True)
    filled_quantity = fields.Integer()
    average_price = fields.Float(allow_none=True)
    error = fields.String(allow_none=True)


class RollbackActionSchema(Schema):
    action = fields.String()
    leg_order_id = fields.String()
    order_id = fields.String(allow_none=True)
    quantity = fields.Integer()
    result = fields.String()
    error = fields.String(allow_none=True)
    completed_at = fields.String(allow_none=True)


class BatchSchema(Schema):
    batch_id = fields.String()
    account_id = fields.String()
    status = fields.String(metadata={"enum": ["RUNNING", "COMPLETED", "PARTIAL", "ROLLED_BACK", "ROLLBACK_FAILED"]})
    success = fields.Boolean()
    total_orders = fields.Integer()
    succeeded = fields.Integer()
    failed = fields.Integer()
    order_ids = fields.List(fields.String())
    legs = fields.List(fields.Nested(LegSchema))
    rollback = fields.List(fields.Nested(RollbackActionSchema))
    rollback_on_failure = fields.Boolean()
    execution = fields.String()
    error = fields.String(allow_none=True)
    created_at = fields.String()
    completed_at = fields.String(allow_none=True)


def _submit(account_id: str, body: dict):
    # The legs are checked by the service (validate_legs); a NUL character, which the database
    # cannot store (e.g. in a leg's `tag`), is refused here first, naming the field.
    problems = nul_fields(request.get_json(silent=True))
    if problems:
        raise ValidationError(problems)
    require_account(account_id)
    idempotency_key = _idempotency_key()
    try:
        batch, created = service.create_batch(account_id, body["legs"], body["rollback_on_failure"],
                                              body["execution"], idempotency_key)
    except service.BatchNotFound as exc:
        raise ApiError(404, str(exc))
    except service.BatchConflict as exc:
        raise ApiError(409, str(exc), "idempotency_conflict", {"batch_id": exc.batch_id})
    if created:
        try:
            launch(batch)
        except Exception:  # Redis down: the batch is stored; the reconciler and watchdog drive it on
            log.exception("batch chord not launched", extra={"batch_id": batch.id})
            mark_enqueue_failed([leg.id for leg in batch.legs])
    if body["wait"] > 0:
        batch = service.wait_until_final(batch.id, body["wait"])
    view = service.batch_view(batch)
    return view, 200 if batch.status in service.FINAL_BATCH else 202


@blp.route("/accounts/<account_id>/batch-orders", methods=["POST"])
@blp.arguments(BatchRequestSchema)
@blp.response(202, BatchSchema)
@blp.alt_response(200, schema=BatchSchema, success=True, description="the batch settled within `wait` seconds")
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@blp.doc(parameters=[IDEMPOTENCY_KEY_PARAMETER])
def create_for_account(body, account_id):
    """Place 1–10 legs as one batch; `wait` seconds (default 10) for the result, else 202 while it runs."""
    return _submit(account_id, body)


@blp.route("/advanced/batch-orders", methods=["POST"])
@blp.arguments(AdvancedBatchRequestSchema)
@blp.response(202, BatchSchema)
@blp.alt_response(200, schema=BatchSchema, success=True, description="the batch settled within `wait` seconds")
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@blp.doc(parameters=[IDEMPOTENCY_KEY_PARAMETER])
def create_advanced(body):
    """The ticker-service v2 path: the account travels in the body (legs also accepted as `orders`)."""
    return _submit(body["account_id"], body)


@blp.route("/batches/<batch_id>", methods=["GET"])
@blp.response(200, BatchSchema)
@blp.alt_response(404, response="NOT_FOUND")
def get_batch(batch_id):
    """A batch, its legs and every rollback action."""
    principal = authenticate()
    try:
        batch = service.get_batch(batch_id)
    except service.BatchNotFound:
        raise ApiError(404, f"batch {batch_id!r} not found")
    if not principal.may_access(batch.account_id):
        raise ApiError(404, f"batch {batch_id!r} not found")  # don't reveal other accounts' ids
    return service.batch_view(batch)
