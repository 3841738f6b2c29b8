"""Batch orders: 1–10 legs placed together, rolled back to flat when one fails."""
import logging

from marshmallow import Schema, fields

from app.web.auth import authenticate, require_account
from app.batches import service
from app.batches.launch import launch
from app.batches.schemas import AdvancedBatchRequestSchema, BatchRequestSchema, legs_of_account
from app.orders.service import mark_enqueue_failed
from app.web.blueprint import Blueprint, idempotency_key, idempotency_key_parameter

log = logging.getLogger(__name__)
blp = Blueprint("batches", __name__, description="Multi-leg batch orders")

IDEMPOTENCY_KEY = idempotency_key_parameter("the same key gives back the first batch; with another body it is a 409")


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
    parent_id = fields.String(metadata={"description": "for a slice of a leg above the freeze quantity: "
                                                    "the order that shows its slices together"})


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


def _submit(account_id: str, batch: dict):
    require_account(account_id)
    key = idempotency_key()
    stored, created = service.place_batch(account_id, legs_of_account(account_id, batch["legs"]),
                                          batch["rollback_on_failure"], batch["execution"], key,
                                          margin_check=batch["margin_check"])
    if created:
        try:
            launch(stored)
        except Exception:  # Redis down: the batch is stored; the reconciler and watchdog drive it on
            log.exception("batch chord not launched", extra={"batch_id": stored.id})
            mark_enqueue_failed([leg.id for leg in stored.legs])
    if batch["wait"] > 0:
        stored = service.wait_until_final(stored.id, batch["wait"])
    return service.batch_view(stored), 200 if stored.status in service.FINAL_BATCH else 202


def _documented_as_submission(view):
    """202 while the batch runs, 200 once it settled within `wait` seconds; 422 also for a basket
    beyond the available margin, 503 when the margin could not be checked (nothing stored); 429 with
    Retry-After when not every leg fits in the day's order budget (nothing stored)."""
    view = blp.response(202, BatchSchema)(view)
    view = blp.alt_response(200, schema=BatchSchema, success=True,
                            description="the batch settled within `wait` seconds")(view)
    view = blp.errors(403, 404, 409, 503)(view)
    view = blp.order_budget_refusal()(view)
    return blp.doc(parameters=[IDEMPOTENCY_KEY])(view)


@blp.route("/accounts/<account_id>/batch-orders", methods=["POST"])
@blp.arguments(BatchRequestSchema)
@_documented_as_submission
def create_for_account(batch, account_id):
    """Place 1–10 legs as one batch; `wait` seconds (default 10) for the result, else 202 while it runs."""
    return _submit(account_id, batch)


@blp.route("/advanced/batch-orders", methods=["POST"])
@blp.arguments(AdvancedBatchRequestSchema)
@_documented_as_submission
def create_advanced(batch):
    """The ticker-service v2 path: the account travels in the body (legs also accepted as `orders`)."""
    return _submit(batch["account_id"], batch)


@blp.route("/batches/<batch_id>", methods=["GET"])
@blp.response(200, BatchSchema)
@blp.errors(404)
def get_batch(batch_id):
    """A batch, its legs and every rollback action."""
    batch = service.get_batch(batch_id)
    if not authenticate().may_access(batch.account_id):
        raise service.BatchNotFound(batch_id)  # as for an id that does not exist: ids reveal nothing
    return service.batch_view(batch)
