"""Order-update messages on Redis pub/sub (`orders:{account_id}`), read by the WebSocket relay.

Each message carries a per-account sequence number (Redis INCR) so a client can
detect a gap and resync from the REST API.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from app.order_view import iso
from app.redis_client import get_redis

log = logging.getLogger(__name__)


def channel(account_id: str) -> str:
    return f"orders:{account_id}"


def build_message(account_id: str, data: dict, seq: int, message_type: str = "order_update") -> dict:
    return {"type": message_type, "account_id": account_id, "seq": seq, "data": data,
            "timestamp": iso(datetime.now(timezone.utc))}


def publish(account_id: str, data: dict, message_type: str = "order_update") -> dict | None:
    """Publish one update; a Redis failure is logged, never raised (the database is the record)."""
    try:
        redis = get_redis()
        seq = int(redis.incr(f"orders:seq:{account_id}"))
        message = build_message(account_id, data, seq, message_type)
        redis.publish(channel(account_id), json.dumps(message, default=str))
        return message
    except Exception:
        log.warning("order update not published", exc_info=True, extra={"account_id": account_id})
        return None


def order_changed(order) -> dict | None:
    """Tell the world an order changed, after its transition is committed.

    Publishes the record (without its event list) on `orders:{account_id}`;
    webhooks subscribe to the same transitions (see app.webhook_events).
    """
    from app.order_view import order_view

    data = order_view(order, with_events=False)
    message = publish(order.account_id, data)
    try:
        from app import webhook_events
    except ImportError:  # webhooks not installed in this build
        return message
    webhook_events.order_changed(order.account_id, data)
    return message
