"""The JSON shape of an order record: one schema for REST answers, WebSocket snapshots and updates."""
from __future__ import annotations

from marshmallow import Schema, fields, post_dump
from sqlalchemy import inspect

from app.core.timestamps import iso
from app.models import Order


class Timestamp(fields.String):
    """A datetime written as every API body writes it (app.core.timestamps.iso); a string in the OpenAPI."""

    def _serialize(self, value, attr, obj, **kwargs):
        return iso(value)


class _SameAsId(fields.String):
    """The order's `id` under another name (marshmallow lets only one field take an attribute)."""

    def serialize(self, attr, obj, accessor=None, **kwargs):
        return super().serialize("id", obj, accessor, **kwargs)


class OrderEventSchema(Schema):
    """One state transition of an order."""

    at = Timestamp(metadata={"description": "UTC ISO-8601 with milliseconds"})
    from_status = fields.String(allow_none=True)
    to_status = fields.String()
    attempt = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    detail = fields.Dict(allow_none=True)


class SliceSchema(Schema):
    """One slice of an order above the freeze quantity (an order of its own: GET /orders/{id})."""

    id = fields.String()
    slice_index = fields.Integer()
    quantity = fields.Integer()
    status = fields.String()
    filled_quantity = fields.Integer(allow_none=True)
    average_price = fields.Float(allow_none=True)
    broker_order_id = fields.String(allow_none=True)
    error = fields.String(allow_none=True)


class _Slices(fields.List):
    """A parent's slices when they were loaded with it (app.orders.service loads them); a record
    read elsewhere (an update of a plain order) leaves the field out rather than query for it."""

    def serialize(self, attr, obj, accessor=None, **kwargs):
        if getattr(obj, "role", None) != "parent" or "children" in inspect(obj).unloaded:
            return None
        return super().serialize(attr, obj, accessor, **kwargs)


class OrderSchema(Schema):
    """An order record (an Order with its events)."""

    id = fields.String()
    order_id = _SameAsId(metadata={"description": "same as `id`"})
    account_id = fields.String()
    status = fields.String(metadata={"description": "QUEUED, SUBMITTING, OPEN, COMPLETE, CANCELLED, "
                                                    "REJECTED, DEAD_LETTER or EXPIRED (not sent before "
                                                    "expires_at: never placed late); a sliced order also "
                                                    "PARTIAL (final: some but not all of it filled)"})
    broker_order_id = fields.String(allow_none=True)
    broker_status = fields.String(allow_none=True)
    status_message = fields.String(allow_none=True, metadata={
        "description": "the broker's word on the order's status, e.g. why it was rejected"})
    status_message_raw = fields.String(allow_none=True, metadata={
        "description": "the broker's raw text beside it, e.g. Kite's RMS reason (\"RMS:Margin Exceeds,...\")"})
    tag = fields.String(allow_none=True, metadata={"description": "the tag the broker keeps with the order"})
    attempts = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    exchange = fields.String()
    tradingsymbol = fields.String()
    instrument_token = fields.Integer(allow_none=True)
    transaction_type = fields.String()
    quantity = fields.Integer()
    product = fields.String()
    order_type = fields.String()
    variety = fields.String(allow_none=True)
    validity = fields.String(allow_none=True, metadata={"description": "DAY, IOC or TTL"})
    validity_ttl = fields.Integer(allow_none=True, metadata={"description": "minutes a TTL order lives"})
    price = fields.Float(allow_none=True)
    trigger_price = fields.Float(allow_none=True)
    disclosed_quantity = fields.Integer(allow_none=True)
    market_protection = fields.Float(allow_none=True)
    client_tag = fields.String(allow_none=True, metadata={"description": "the request's `tag`"})
    filled_quantity = fields.Integer(allow_none=True)
    average_price = fields.Float(allow_none=True)
    batch_id = fields.String(allow_none=True)
    leg_index = fields.Integer(allow_none=True)
    role = fields.String(allow_none=True, metadata={
        "description": "order, leg, rollback, parent (an order above the freeze quantity, placed as its "
                       "slices) or slice"})
    parent_id = fields.String(allow_none=True, metadata={"description": "a slice's parent order"})
    slice_index = fields.Integer(allow_none=True, metadata={"description": "a slice's place in its parent, from 0"})
    children = _Slices(fields.Nested(SliceSchema), data_key="children", metadata={
        "description": "a parent's slices; its status, filled_quantity and average_price aggregate theirs"})
    created_at = Timestamp(allow_none=True)
    updated_at = Timestamp(allow_none=True)
    expire_after_s = fields.Integer(allow_none=True, metadata={
        "description": "the request's expire_after_s (null: ORDER_MAX_QUEUE_S)"})
    expires_at = Timestamp(allow_none=True, metadata={
        "description": "unsent by then, the order ends EXPIRED instead of being placed late"})
    send_at = Timestamp(allow_none=True, metadata={
        "description": "the send slot the rate limiter reserved for it (a QUEUED order waits for it)"})
    events = fields.List(fields.Nested(OrderEventSchema))

    @post_dump
    def _slices_only_on_parents(self, data, **_kw):
        if data.get("children") is None:
            data.pop("children", None)
        return data


class OrderListSchema(Schema):
    """A page of orders, newest first; `next_cursor` continues after its last order."""

    orders = fields.List(fields.Nested(OrderSchema))
    count = fields.Integer()
    next_cursor = fields.String(allow_none=True)


_with_events = OrderSchema()
_without_events = OrderSchema(exclude=("events",))


def order_view(order: Order, with_events: bool = True) -> dict:
    """The record as the API and the order stream show it (the stream leaves the events out)."""
    return (_with_events if with_events else _without_events).dump(order)
