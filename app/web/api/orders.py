"""Orders REST API: place (idempotent), read, list, modify, cancel, dead-letter and replay.

Account routes answer 403 for another account's key (404 for an account that does
not exist); /orders/{id} answers 404 for an order the key may not see, so order
ids reveal nothing.
"""
from __future__ import annotations

import functools
from datetime import datetime, timezone

from flask import jsonify, request
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.exceptions import HTTPException

from app import accounts as account_service
from app.orders import metrics as order_metrics
from app.web.auth import authenticate, require_account
from app.core.db import session_scope
from app.web.errors import ApiError
from app.orders.view import order_view
from app.orders import service
from app.core.validation import NUL_FREE, nul_fields
from app.orders.schemas import ModifyRequestSchema, OrderListSchema, OrderRequestSchema, OrderSchema
from app.orders.states import ALLOWED

blp = Blueprint("orders", __name__, description="Orders: placement, status, modify, cancel, dead-letter")


IDEMPOTENCY_KEY_MAX = 128
LIST_LIMIT_MAX = 500

IDEMPOTENCY_KEY_PARAMETER = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "description": "the same key and body give back the first order (200); the same key with another "
                   "body is a 409",
    "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
}
LOCATION_HEADER = {"Location": {"description": "/orders/{id} of the order", "schema": {"type": "string"}}}


class PlaceOrderRequestSchema(OrderRequestSchema):
    """`POST /orders/place` (the ticker-service v2 path): an order with its `account_id`."""

    account_id = fields.String(required=True, validate=[validate.Length(min=1), NUL_FREE])


class OrderListQuerySchema(Schema):
    status = fields.String(metadata={"description": "comma-separated statuses, any of: " + ", ".join(sorted(ALLOWED))})
    since = fields.String(metadata={"format": "date-time",
                                    "description": "ISO-8601 date-time (UTC if no offset), e.g. 2025-10-31T09:15:00Z"})
    limit = fields.Integer(validate=validate.Range(min=1, max=LIST_LIMIT_MAX),
                           metadata={"description": "page size (default 100)"})
    cursor = fields.String(metadata={"description": "`next_cursor` of the previous page"})


class DeadLetterQuerySchema(OrderListQuerySchema):
    class Meta:
        exclude = ("status",)  # always DEAD_LETTER

    account_id = fields.String(validate=[validate.Length(min=1, max=64), NUL_FREE],
                               metadata={"description": "only this account (default: every account of the key)"})


def _counted(operation: str):
    """Count every answer of the route in order_requests_total{operation,status}.

    Placed outside the argument parsing, so the 422s of the request schemas are counted too.
    """
    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            try:
                response = view(*args, **kwargs)
            except ApiError as exc:
                order_metrics.count_request(operation, exc.status)
                raise
            except ValidationError:
                order_metrics.count_request(operation, 422)
                raise
            except service.OrderError as exc:
                order_metrics.count_request(operation, exc.status)
                raise ApiError(exc.status, exc.message, exc.code, exc.details)
            except HTTPException as exc:  # webargs' 422 for a body or query its schema refuses
                order_metrics.count_request(operation, exc.code or 500)
                raise
            except Exception:
                order_metrics.count_request(operation, 500)
                raise
            status = response[1] if isinstance(response, tuple) else getattr(response, "status_code", 200)
            order_metrics.count_request(operation, status)
            return response
        return inner
    return wrap


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "request body must be JSON (Content-Type: application/json)")
    if not isinstance(body, dict):
        raise ApiError(422, "request body must be a JSON object", details={"_schema": ["not an object"]})
    return body


def _json_object_body(view):
    """Before the request schema: a body that is not JSON is a 400, one that is not an object a 422,
    one with a NUL character in a string (which the database cannot store) a 422 naming the field."""
    @functools.wraps(view)
    def inner(*args, **kwargs):
        problems = nul_fields(_json_body())
        if problems:
            raise ValidationError(problems)
        return view(*args, **kwargs)
    return inner


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX:
        raise ApiError(422, f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} characters",
                       details={"Idempotency-Key": ["1-128 characters"]})
    return key


def _placed(account_id: str, body: dict):
    order, created = service.place(account_id, body, _idempotency_key())
    response = jsonify(order_view(order))
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/orders/{order.id}"
    return response


def _visible_order(order_id: str):
    """The order if this key may see it; otherwise 404, exactly as for an id that does not exist."""
    principal = authenticate()
    try:
        order = service.get(order_id)
    except service.OrderNotFound:
        raise ApiError(404, f"order {order_id!r} not found")
    if not principal.may_access(order.account_id):
        raise ApiError(404, f"order {order_id!r} not found")
    return order


def _existing_account(account_id: str) -> None:
    """404 for an account that does not exist (a key may name it, an admin key may name any)."""
    with session_scope() as session:
        try:
            account_service.get_account(session, account_id)
        except account_service.AccountNotFound:
            raise ApiError(404, f"account {account_id!r} not found")


# The request schemas validate the body (422 naming the field); the views hand the body as
# sent to the service, which validates it again against the instrument and computes the
# idempotency hash from it, exactly as before the schemas documented it.

@blp.route("/accounts/<account_id>/orders", methods=["POST"])
@_counted("place")
@_json_object_body
@blp.arguments(OrderRequestSchema, description="one order (Kite's order parameters)")
@blp.response(202, OrderSchema, description="accepted and enqueued", headers=LOCATION_HEADER)
@blp.alt_response(200, schema=OrderSchema, success=True, headers=LOCATION_HEADER,
                  description="the order first placed with this Idempotency-Key and body")
@blp.alt_response(400, response="BAD_REQUEST")
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@blp.doc(parameters=[IDEMPOTENCY_KEY_PARAMETER])
def place_for_account(_order, account_id):
    """Enqueue one order for the account (202 with the order record; Idempotency-Key honoured)."""
    require_account(account_id)
    return _placed(account_id, _json_body())


@blp.route("/orders/place", methods=["POST"])
@_counted("place")
@_json_object_body
@blp.arguments(PlaceOrderRequestSchema, description="one order and its `account_id`")
@blp.response(202, OrderSchema, description="accepted and enqueued", headers=LOCATION_HEADER)
@blp.alt_response(200, schema=OrderSchema, success=True, headers=LOCATION_HEADER,
                  description="the order first placed with this Idempotency-Key and body")
@blp.alt_response(400, response="BAD_REQUEST")
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@blp.doc(parameters=[IDEMPOTENCY_KEY_PARAMETER])
def place(_order):
    """Enqueue one order; `account_id` in the body (ticker-service v2 path)."""
    body = dict(_json_body())
    account_id = body.pop("account_id", None)
    if not isinstance(account_id, str) or not account_id:
        raise ValidationError({"account_id": ["Missing data for required field."]})
    require_account(account_id)
    return _placed(account_id, body)


def _parse_list_query(args) -> dict:
    errors: dict = {}
    statuses = None
    if args.get("status"):
        statuses = [s.strip().upper() for s in args["status"].split(",") if s.strip()]
        unknown = [s for s in statuses if s not in ALLOWED]
        if unknown:
            errors["status"] = [f"unknown status {', '.join(unknown)}; one of {', '.join(sorted(ALLOWED))}"]
    since = None
    if args.get("since"):
        try:
            # RFC 3339 allows a lower-case `t` and `z`
            since = datetime.fromisoformat(args["since"].strip().upper().replace("Z", "+00:00"))
            if since.tzinfo is None:
                since = since.replace(tzinfo=timezone.utc)
            since = since.astimezone(timezone.utc)  # as stored; 0001-01-01T00:00+01:00 is out of range
        except (ValueError, OverflowError):
            errors["since"] = ["an ISO-8601 date-time, e.g. 2025-10-31T09:15:00Z"]
    limit = 100
    if args.get("limit"):
        try:
            limit = int(args["limit"])
            if not 1 <= limit <= LIST_LIMIT_MAX:
                raise ValueError
        except ValueError:
            errors["limit"] = [f"an integer from 1 to {LIST_LIMIT_MAX}"]
    if errors:
        raise ValidationError(errors)
    return {"statuses": statuses, "since": since, "limit": limit, "cursor": args.get("cursor") or None}


@blp.route("/accounts/<account_id>/orders", methods=["GET"])
@_counted("list")
@blp.arguments(OrderListQuerySchema, location="query")
@blp.response(200, OrderListSchema)
@blp.alt_response(400, response="BAD_REQUEST")
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(404, response="NOT_FOUND")
def list_for_account(_query, account_id):
    """The account's orders, newest first. Filters: status (comma list), since, limit; cursor pagination."""
    require_account(account_id)
    _existing_account(account_id)
    query = _parse_list_query(request.args)
    orders, cursor = service.list_orders([account_id], **query)
    return jsonify({"orders": [order_view(o) for o in orders], "count": len(orders), "next_cursor": cursor})


@blp.route("/orders/dead-letter", methods=["GET"])
@_counted("dead_letter")
@blp.arguments(DeadLetterQuerySchema, location="query")
@blp.response(200, OrderListSchema)
@blp.alt_response(400, response="BAD_REQUEST")
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(404, response="NOT_FOUND")
def dead_letter(_query):
    """Dead-lettered orders of the accounts this key may see, with their reasons."""
    principal = authenticate()
    accounts = None if principal.is_admin else sorted(principal.accounts)
    if request.args.get("account_id"):
        require_account(request.args["account_id"])
        _existing_account(request.args["account_id"])
        accounts = [request.args["account_id"]]
    query = _parse_list_query({**request.args, "status": "DEAD_LETTER"})
    orders, cursor = service.list_orders(accounts, **query)
    return jsonify({"orders": [order_view(o) for o in orders], "count": len(orders), "next_cursor": cursor})


@blp.route("/orders/<order_id>", methods=["GET"])
@_counted("get")
@blp.response(200, OrderSchema)
@blp.alt_response(404, response="NOT_FOUND")
def get_order(order_id):
    """One order record with its events."""
    return jsonify(order_view(_visible_order(order_id)))


@blp.route("/orders/<order_id>", methods=["PATCH"])
@_counted("modify")
@_json_object_body
@blp.arguments(ModifyRequestSchema, description="at least one of the fields")
@blp.response(202, OrderSchema, description="checked and handed to the worker")
@blp.alt_response(400, response="BAD_REQUEST")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def modify_order(_changes, order_id):
    """Modify an OPEN order (quantity, price, trigger_price, order_type, validity); the worker sends it (202)."""
    _visible_order(order_id)
    order = service.request_modify(order_id, _json_body())
    return jsonify(order_view(order)), 202


@blp.route("/orders/<order_id>", methods=["DELETE"])
@_counted("cancel")
@blp.response(202, OrderSchema, description="cancelled, or handed to the worker to cancel at the broker")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def cancel_order(order_id):
    """Cancel an order: at once if not yet sent, else through the worker at the broker (202)."""
    _visible_order(order_id)
    order = service.request_cancel(order_id)
    return jsonify(order_view(order)), 202


@blp.route("/orders/<order_id>/replay", methods=["POST"])
@_counted("replay")
@blp.response(202, OrderSchema, description="back to QUEUED and enqueued")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def replay_order(order_id):
    """Send a DEAD_LETTER order again through the exactly-once path (202)."""
    _visible_order(order_id)
    order = service.replay(order_id)
    return jsonify(order_view(order)), 202
