"""GET /ws/status: the relay's connections and the health of its Redis subscription."""
from flask import current_app
from flask_smorest import Blueprint

from app.auth import authenticate
from app.realtime.hub import get_hub

blp = Blueprint("ws-status", __name__, description="WebSocket relay status")


@blp.route("/ws/status")
def ws_status():
    """Connections per endpoint and account (this web process), and the Redis subscription's health.

    An admin key sees every account; other keys see their own accounts' counts.
    """
    principal = authenticate()
    relay = get_hub(current_app.config["SETTINGS"].redis_url)
    body = relay.status(None if principal.is_admin else principal.accounts)
    body["status"] = "ok" if relay.connected else "degraded"
    return body, 200
