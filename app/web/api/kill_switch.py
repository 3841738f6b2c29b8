"""The kill switch REST API: start it on an account, follow it, and resume the account afterwards.

The admin key or the account's own key may do each. A kill switch another key may not see answers
404, exactly as one that does not exist, so ids reveal nothing.
"""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.core.validation import NUL_FREE
from app.risk import kill_switch
from app.risk.kill_record import view
from app.web.auth import authenticate, require_account
from app.web.blueprint import Blueprint, idempotency_key, idempotency_key_parameter

blp = Blueprint("kill_switch", __name__, description="Kill switch: flatten an account and halt it")

LOCATION_HEADER = {"Location": {"description": "/kill-switches/{id} of the operation", "schema": {"type": "string"}}}


class KillSwitchRequestSchema(Schema):
    reason = fields.String(validate=[validate.Length(max=500), NUL_FREE], load_default=None, allow_none=True,
                           metadata={"description": "why, for the record (shown with the halted state)"})


class StepSchema(Schema):
    step = fields.String(metadata={"description": "halt, cancel_queued, cancel_open, square_off (per round), verify"})
    round = fields.Integer(metadata={"description": "square_off: the round, from 1"})
    status = fields.String(metadata={"description": "running, done or failed"})
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    error = fields.String()
    detail = fields.Dict(metadata={"description": (
        "what the step did: orders cancelled unsent; broker orders cancelled; a round's positions and "
        "its square-off orders (each an order of the service: GET /orders/{id})")})


class KillSwitchSchema(Schema):
    id = fields.String()
    account_id = fields.String()
    status = fields.String(metadata={"description": "running, done (the broker's positions are flat) or failed"})
    reason = fields.String(allow_none=True)
    requested_by = fields.String(allow_none=True, metadata={"description": "the credential that started it"})
    steps = fields.List(fields.Nested(StepSchema))
    error = fields.String(allow_none=True, metadata={"description": "failed: why; running: the last hitch"})
    runs = fields.Integer(metadata={"description": "worker runs that carried it on so far"})
    created_at = fields.String()
    updated_at = fields.String()
    finished_at = fields.String(allow_none=True)


class HaltedSchema(Schema):
    at = fields.String()
    reason = fields.String(allow_none=True)
    by = fields.String(allow_none=True)
    kill_switch_id = fields.String(allow_none=True)


class ResumedSchema(Schema):
    account_id = fields.String()
    halted = fields.Nested(HaltedSchema, allow_none=True, metadata={"description": "null: trading again"})
    resumed_at = fields.String()
    resumed_by = fields.String()
    was = fields.Nested(HaltedSchema, allow_none=True, metadata={"description": "the halt just cleared"})


@blp.route("/accounts/<account_id>/kill-switch", methods=["POST"])
@blp.arguments(KillSwitchRequestSchema, required=False, description="optional: {\"reason\": \"...\"}")
@blp.response(202, KillSwitchSchema, description="started: the account is halted, a worker flattens it",
              headers=LOCATION_HEADER)
@blp.alt_response(200, schema=KillSwitchSchema, success=True, headers=LOCATION_HEADER, description=(
    "the kill switch already running on the account, or the one started with this Idempotency-Key"))
@blp.errors(403, 404)
@blp.doc(parameters=[idempotency_key_parameter("the same key gives back the operation it started (200)")])
def start_kill_switch(body, account_id):
    """Halt the account and flatten it at the broker: cancel every open order (queued here or live at the
    broker), then square off every net position — shorts bought back first, MARKET orders with market
    protection, in freeze-sized slices. Follow it at /kill-switches/{id} or on the order stream."""
    principal = require_account(account_id)
    operation, created = kill_switch.start(account_id, body.get("reason"), principal.key_id[:64], idempotency_key())
    return view(operation), 202 if created else 200, {"Location": f"/kill-switches/{operation.id}"}


@blp.route("/kill-switches/<kill_switch_id>", methods=["GET"])
@blp.response(200, KillSwitchSchema)
@blp.errors(404)
def get_kill_switch(kill_switch_id):
    """A kill switch with its steps, as they happen."""
    operation = kill_switch.get(kill_switch_id)
    if not authenticate().may_access(operation.account_id):
        raise kill_switch.KillSwitchNotFound(f"kill switch {kill_switch_id!r} not found")
    return view(operation)


@blp.route("/accounts/<account_id>/resume", methods=["POST"])
@blp.response(200, ResumedSchema, description="the halt is cleared: new orders are accepted again")
@blp.errors(403, 404, 409)
def resume_account(account_id):
    """Let a halted account trade again; 409 `kill_switch_running` while its kill switch runs."""
    principal = require_account(account_id)
    return kill_switch.resume(account_id, principal.key_id[:64])
