"""The WebSocket routes (flask-sock on a flask-smorest blueprint, registered by app.web.api).

Authorization happens in the blueprint's before_request, i.e. before the
handshake: a key without the account gets 403 in the JSON error shape and no socket.
The URL may carry the credential (`?api_key=`, `?access_token=`: app.web.auth); a socket
opened with a bearer token is closed with 4401 when the token expires (connection.py).
The connection caps are checked as the hub registers the socket, after the handshake, so
that check and count are one step: a socket past a cap is closed at once, with a code and reason.
"""
from __future__ import annotations

import json
import logging

from flask import current_app, request
from flask_smorest import Blueprint

from app.web.auth import Principal, authenticate, require_account, require_admin
from app.web.errors import ApiError
from app.web.extensions import sock
from app.realtime import connection
from app.realtime.clients import (OrderClient, Outbox, SubscriptionError, TickClient, parse_chains,
                                  parse_subscription_message, parse_tokens, parse_underlyings)
from app.realtime.hub import OverCap, RealtimeHub, get_hub
from app.realtime.snapshot import order_snapshot
from app.core.redis_client import get_redis

log = logging.getLogger(__name__)
INTERNAL_ERROR = 1011

blp = Blueprint("websockets", __name__, description="WebSocket relay: order updates and tick batches")


def hub() -> RealtimeHub:
    return get_hub(current_app.config["SETTINGS"].redis_url)


@blp.before_request
def _authorize_socket():
    endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
    if endpoint.startswith("account_orders_socket"):
        require_account(request.view_args["account_id"])
    elif endpoint == "all_orders_socket":
        require_admin()
    elif endpoint == "ticks_socket":
        authenticate()
        try:  # bad query parameters are a 422 before the socket opens
            parse_underlyings(request.args.get("underlying"))
            parse_tokens(request.args.get("tokens"))
            parse_chains(request.args.get("chain"))
        except SubscriptionError as exc:
            raise ApiError(422, str(exc))


def cap_owner(principal: Principal) -> str | None:
    """Whose WS_MAX_CLIENTS_PER_KEY a socket counts against; None for admin keys (operators' services,
    bench/ws_fanout.py's thousand sockets), which only WS_MAX_CLIENTS bounds."""
    if principal.is_admin:
        return None
    # key_id alone is a key's first characters, which different keys may share (the tests' keys do);
    # with the accounts the key grants, two keys share a cap only when they are alike in both.
    return f"{principal.key_id}={','.join(sorted(principal.accounts))}"


def _register(ws, relay: RealtimeHub, client: OrderClient | TickClient) -> bool:
    """Add the client to the hub, or close its socket when a connection cap leaves no room."""
    try:
        relay.add(client)
    except OverCap as refused:
        log.info("WebSocket refused", extra={"endpoint": client.endpoint, "key_id": client.key_id,
                                             "reason": refused.reason})
        ws.close(refused.code, refused.reason)
        return False
    return True


def _serve_orders(ws, account_id: str | None, endpoint: str) -> None:
    relay = hub()
    principal = authenticate()
    client = OrderClient(endpoint=endpoint, outbox=Outbox(relay.order_queue_limit, drop_oldest=False),
                         account_id=account_id, key_id=principal.key_id, owner=cap_owner(principal))
    if not _register(ws, relay, client):  # first: updates published from now on are queued, none lost
        return
    try:
        snapshot = order_snapshot(get_redis(relay.redis_url), account_id)
    except Exception:  # database or Redis down: tell the client to retry rather than fail silently
        log.warning("order snapshot unavailable", exc_info=True, extra={"account_id": account_id})
        relay.remove(client)
        ws.close(INTERNAL_ERROR, "snapshot unavailable, reconnect shortly")
        return
    seqs = snapshot["seq"] if isinstance(snapshot["seq"], dict) else {account_id: snapshot["seq"]}
    connection.serve(ws, client, relay, first=[json.dumps(snapshot, default=str)], skip_through=seqs,
                     expires_at=principal.expires_at)


@sock.route("/ws/orders/<account_id>", bp=blp)
def account_orders_socket(ws, account_id):
    """Order updates of one account (WebSocket; see app/realtime/__init__.py for the messages)."""
    _serve_orders(ws, account_id, "orders")


@sock.route("/advanced/ws/orders/<account_id>", bp=blp)
def account_orders_socket_alias(ws, account_id):
    """Alias of /ws/orders/{account_id} (the old ticker service's path, kept for its clients)."""
    _serve_orders(ws, account_id, "orders")


@sock.route("/ws/orders", bp=blp)
def all_orders_socket(ws):
    """Order updates of every account (WebSocket, admin keys)."""
    _serve_orders(ws, None, "orders_all")


@sock.route("/ws/ticks", bp=blp)
def ticks_socket(ws):
    """Tick batches filtered by `underlying`, `chain` (UNDERLYING:YYYY-MM-DD) and/or `tokens` (WebSocket)."""
    relay = hub()
    principal = authenticate()
    client = TickClient(endpoint="ticks", outbox=Outbox(relay.tick_buffer_limit, drop_oldest=True),
                        key_id=principal.key_id, owner=cap_owner(principal),
                        underlyings=parse_underlyings(request.args.get("underlying")),
                        tokens=parse_tokens(request.args.get("tokens")),
                        chains=parse_chains(request.args.get("chain")))

    def on_text(text: str) -> list[str]:
        try:
            return [json.dumps(relay.resubscribe(client, *parse_subscription_message(text)))]
        except SubscriptionError as exc:
            return [json.dumps({"type": "error", "message": str(exc)})]

    if not _register(ws, relay, client):
        return
    connection.serve(ws, client, relay, first=[json.dumps(client.subscription())], on_text=on_text,
                     expires_at=principal.expires_at)
