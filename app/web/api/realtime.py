"""GET /ws/status: the relay's connections and the health of its Redis subscription."""
from flask import current_app
from marshmallow import Schema, fields

from app.realtime.hub import get_hub
from app.web.auth import authenticate
from app.web.blueprint import Blueprint

blp = Blueprint("ws-status", __name__, description="WebSocket relay status")


class ConnectionsSchema(Schema):
    total = fields.Integer()
    by_endpoint = fields.Dict(keys=fields.String(), values=fields.Integer(),
                              metadata={"description": "orders, orders_all, ticks"})
    by_account = fields.Dict(keys=fields.String(), values=fields.Integer())


class RelayRedisSchema(Schema):
    subscribed = fields.Boolean()
    patterns = fields.List(fields.String())
    connected_since = fields.String(allow_none=True)
    last_message_at = fields.String(allow_none=True)
    reconnects = fields.Integer()
    last_error = fields.String(allow_none=True)


class RelayLimitsSchema(Schema):
    order_queue = fields.Integer()
    tick_buffer = fields.Integer()


class TickSubscriptionsSchema(Schema):
    underlyings = fields.Integer(metadata={"description": "underlyings with at least one whole-channel watcher"})
    chains = fields.Integer(metadata={"description": "option chains with at least one watcher"})
    chain_watchers = fields.Integer(metadata={"description": "(socket, underlying) pairs watching chains"})
    tokens = fields.Integer(metadata={"description": "distinct tokens in token filters"})


class WsStatusSchema(Schema):
    """app.realtime.hub.RealtimeHub.status() of this web process, and `status`."""

    status = fields.String(metadata={"enum": ["ok", "degraded"]})
    pid = fields.Integer()
    connections = fields.Nested(ConnectionsSchema)
    redis = fields.Nested(RelayRedisSchema)
    slow_clients_disconnected = fields.Integer()
    tick_batches_dropped = fields.Integer()
    tick_subscriptions = fields.Nested(TickSubscriptionsSchema)
    limits = fields.Nested(RelayLimitsSchema)


@blp.route("/ws/status")
@blp.response(200, WsStatusSchema)
def ws_status():
    """Connections per endpoint and account (this web process), and the Redis subscription's health.

    An admin key sees every account; other keys see their own accounts' counts.
    """
    principal = authenticate()
    relay = get_hub(current_app.config["SETTINGS"].redis_url)
    body = relay.status(None if principal.is_admin else principal.accounts)
    body["status"] = "ok" if relay.connected else "degraded"
    return body
