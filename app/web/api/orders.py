"""Orders REST API: place (idempotent), read, list, modify, cancel, dead-letter and replay.

Account routes answer 403 for another account's key (404 for an account that does
not exist); /orders/{id} answers 404 for an order the key may not see, so order
ids reveal nothing. Bodies must be JSON objects (400 otherwise, 422 for JSON that is
not an object); the request schemas load them into what the service takes.
"""
from __future__ import annotations

from datetime import timezone

from marshmallow import Schema, ValidationError, fields, post_load, validate
from webargs.fields import DelimitedList

from app import accounts as account_service
from app.core.db import session_scope
from app.core.validation import NUL_FREE
from app.orders import service
from app.orders.schemas import ModifyRequestSchema, OrderRequestSchema
from app.orders.states import ALLOWED, DEAD_LETTER
from app.orders.view import OrderListSchema, OrderSchema
from app.web import http_metrics
from app.web.auth import authenticate, require_account
from app.web.blueprint import Blueprint, idempotency_key, idempotency_key_parameter

blp = Blueprint("orders", __name__, description="Orders: placement, status, modify, cancel, dead-letter",
                object_bodies=True)

LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 100, 500
IDEMPOTENCY_KEY = idempotency_key_parameter(
    "the same key and body give back the first order (200); the same key with another body is a 409")
LOCATION_HEADER = {"Location": {"description": "/orders/{id} of the order", "schema": {"type": "string"}}}


def _counted(operation: str):
    """Name the route's operation: the request hook counts each of its answers, schema errors
    included, in order_requests_total{operation,status} (app.web.http_metrics)."""
    def name(view):
        setattr(view, http_metrics.ORDER_OPERATION, operation)
        return view
    return name


class OrderPlacementSchema(OrderRequestSchema):
    """An order to place (Kite's order parameters), and whether to check the margin first."""

    margin_check = fields.Boolean(load_default=False, metadata={"description": (
        "ask the broker for the order's margin first and refuse it (422 insufficient_margin) when it "
        "exceeds the account's available margin")})

    @post_load
    def _order_columns(self, data, **kwargs):
        return {"columns": super()._order_columns(data, **kwargs), "margin_check": data["margin_check"]}


class PlaceOrderRequestSchema(OrderPlacementSchema):
    """`POST /orders/place` (the ticker-service v2 path): an order with its `account_id`."""

    account_id = fields.String(required=True, validate=[validate.Length(min=1), NUL_FREE])

    @post_load
    def _order_columns(self, data, **kwargs):
        return {"account_id": data["account_id"], **super()._order_columns(data, **kwargs)}


class _Statuses(DelimitedList):
    """`OPEN,complete`: order statuses in any case; blanks are ignored, none at all is no filter."""

    def _deserialize(self, value, attr, data, **kwargs):
        statuses = [s.strip().upper() for s in super()._deserialize(value, attr, data, **kwargs) if s.strip()]
        unknown = [s for s in statuses if s not in ALLOWED]
        if unknown:
            raise ValidationError(f"unknown status {', '.join(unknown)}; one of {', '.join(sorted(ALLOWED))}")
        return statuses or None


class _UtcDateTime(fields.AwareDateTime):
    """ISO-8601, UTC when it has no offset, returned in UTC as stored (RFC 3339 allows a lower-case
    `t` and `z`); empty is no filter."""

    def __init__(self, **kwargs) -> None:
        super().__init__(format="iso", default_timezone=timezone.utc,
                         error_messages={"invalid": "an ISO-8601 date-time, e.g. 2025-10-31T09:15:00Z"}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "":
            return None
        if isinstance(value, str):
            value = value.strip().upper().replace("Z", "+00:00")
        try:
            return super()._deserialize(value, attr, data, **kwargs).astimezone(timezone.utc)
        except OverflowError:  # 0001-01-01T00:00+01:00 is out of range in UTC
            raise self.make_error("invalid") from None


class OrderListQuerySchema(Schema):
    """→ the keyword arguments of service.list_orders."""

    status = _Statuses(fields.String(), metadata={
        "description": "comma-separated statuses, any of: " + ", ".join(sorted(ALLOWED))})
    since = _UtcDateTime(metadata={
        "description": "ISO-8601 date-time (UTC if no offset), e.g. 2025-10-31T09:15:00Z"})
    limit = fields.Integer(validate=validate.Range(min=1, max=LIST_LIMIT_MAX),
                           metadata={"description": f"page size (default {LIST_LIMIT_DEFAULT})"})
    cursor = fields.String(metadata={"description": "`next_cursor` of the previous page"})

    @post_load
    def _list_arguments(self, data, **_kw):
        return {"statuses": data.get("status"), "since": data.get("since"),
                "limit": data.get("limit", LIST_LIMIT_DEFAULT), "cursor": data.get("cursor") or None}


class DeadLetterQuerySchema(OrderListQuerySchema):
    """→ the keyword arguments of service.list_orders, and the `account_id` asked for."""

    class Meta:
        exclude = ("status",)  # always DEAD_LETTER

    account_id = fields.String(validate=[validate.Length(min=1, max=64), NUL_FREE],
                               metadata={"description": "only this account (default: every account of the key)"})

    @post_load
    def _list_arguments(self, data, **kwargs):
        return {**super()._list_arguments(data, **kwargs), "statuses": [DEAD_LETTER],
                "account_id": data.get("account_id")}


def _placed(account_id: str, placement: dict):
    require_account(account_id)
    order, created = service.place(account_id, placement["columns"], idempotency_key(),
                                   margin_check=placement["margin_check"])
    return order, 202 if created else 200, {"Location": f"/orders/{order.id}"}


def _visible_order(order_id: str):
    """The order if this key may see it; otherwise 404, exactly as for an id that does not exist."""
    order = service.get(order_id)
    if not authenticate().may_access(order.account_id):
        raise service.OrderNotFound(f"order {order_id!r} not found")
    return order


def _existing_account(account_id: str) -> None:
    """404 for an account that does not exist (a key may name it, an admin key may name any)."""
    with session_scope() as session:
        account_service.get_account(session, account_id)


def _page(orders, cursor) -> dict:
    return {"orders": orders, "count": len(orders), "next_cursor": cursor}


def _documented_as_placement(view):
    """202 with the new order, 200 with the one first placed with this Idempotency-Key and body;
    with `margin_check`, 422 for an order beyond the available margin, 503 when the margin could not
    be checked (nothing stored); 429 with Retry-After when the day's order budget has no room for it."""
    view = blp.response(202, OrderSchema, description="accepted and enqueued", headers=LOCATION_HEADER)(view)
    view = blp.alt_response(200, schema=OrderSchema, success=True, headers=LOCATION_HEADER,
                            description="the order first placed with this Idempotency-Key and body")(view)
    view = blp.errors(400, 403, 404, 409, 503)(view)
    view = blp.order_budget_refusal()(view)
    return blp.doc(parameters=[IDEMPOTENCY_KEY])(view)


@blp.route("/accounts/<account_id>/orders", methods=["POST"])
@_counted("place")
@blp.arguments(OrderPlacementSchema, description="one order (Kite's order parameters) and `margin_check`")
@_documented_as_placement
def place_for_account(order, account_id):
    """Enqueue one order for the account (202 with the order record; Idempotency-Key honoured)."""
    return _placed(account_id, order)


@blp.route("/orders/place", methods=["POST"])
@_counted("place")
@blp.arguments(PlaceOrderRequestSchema, description="one order and its `account_id`")
@_documented_as_placement
def place(order):
    """Enqueue one order; `account_id` in the body (ticker-service v2 path)."""
    return _placed(order["account_id"], order)


@blp.route("/accounts/<account_id>/orders", methods=["GET"])
@_counted("list")
@blp.arguments(OrderListQuerySchema, location="query")
@blp.response(200, OrderListSchema)
@blp.errors(400, 403, 404)
def list_for_account(query, account_id):
    """The account's orders, newest first. Filters: status (comma list), since, limit; cursor pagination."""
    require_account(account_id)
    _existing_account(account_id)
    return _page(*service.list_orders([account_id], **query))


@blp.route("/orders/dead-letter", methods=["GET"])
@_counted("dead_letter")
@blp.arguments(DeadLetterQuerySchema, location="query")
@blp.response(200, OrderListSchema)
@blp.errors(400, 403, 404)
def dead_letter(query):
    """Dead-lettered orders of the accounts this key may see, with their reasons."""
    principal = authenticate()
    account_id = query.pop("account_id")
    accounts = None if principal.is_admin else sorted(principal.accounts)
    if account_id:
        require_account(account_id)
        _existing_account(account_id)
        accounts = [account_id]
    return _page(*service.list_orders(accounts, **query))


@blp.route("/orders/<order_id>", methods=["GET"])
@_counted("get")
@blp.response(200, OrderSchema)
@blp.errors(404)
def get_order(order_id):
    """One order record with its events."""
    return _visible_order(order_id)


@blp.route("/orders/<order_id>", methods=["PATCH"])
@_counted("modify")
@blp.arguments(ModifyRequestSchema, description="at least one of the fields")
@blp.response(202, OrderSchema, description="checked and handed to the worker")
@blp.errors(400, 404, 409)
def modify_order(changes, order_id):
    """Modify an OPEN order (quantity, price, trigger_price, order_type, validity); the worker sends it (202)."""
    _visible_order(order_id)
    return service.request_modify(order_id, changes)


@blp.route("/orders/<order_id>", methods=["DELETE"])
@_counted("cancel")
@blp.response(202, OrderSchema, description="cancelled, or handed to the worker to cancel at the broker")
@blp.errors(404, 409)
def cancel_order(order_id):
    """Cancel an order: at once if not yet sent, else through the worker at the broker (202)."""
    _visible_order(order_id)
    return service.request_cancel(order_id)


@blp.route("/orders/<order_id>/replay", methods=["POST"])
@_counted("replay")
@blp.response(202, OrderSchema, description="back to QUEUED and enqueued")
@blp.errors(404, 409)
@blp.order_budget_refusal()
def replay_order(order_id):
    """Send a DEAD_LETTER order again through the exactly-once path (202)."""
    _visible_order(order_id)
    return service.replay(order_id)
