"""Order-update messages on Redis pub/sub (`orders:{account_id}`), read by the WebSocket relay.

Each message carries a per-account sequence number so a client can detect a gap
and resync from the REST API. Numbering and publishing happen in one Lua script:
several workers publish at once, and with INCR and PUBLISH as separate commands a
higher number could go out first, which a client would take for a gap.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from app.webhooks import events as webhook_events
from app.core.timestamps import iso
from app.orders.rejections import count_rejection
from app.orders.states import REJECTED
from app.orders.view import order_view
from app.core.redis_client import get_redis

log = logging.getLogger(__name__)


def channel(account_id: str) -> str:
    return f"orders:{account_id}"


def build_message(account_id: str, data: dict, seq: int, message_type: str = "order_update") -> dict:
    return {"type": message_type, "account_id": account_id, "seq": seq, "data": data,
            "timestamp": iso(datetime.now(timezone.utc))}


SEQ_PLACEHOLDER = '"seq": -1'  # the message's first "seq" (before "data"), numbered in Redis
_NUMBER_AND_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
local first, last = string.find(ARGV[1], ARGV[2], 1, true)
redis.call('PUBLISH', KEYS[2], string.sub(ARGV[1], 1, first - 1) .. '"seq": ' .. seq .. string.sub(ARGV[1], last + 1))
return seq
"""
_scripts: dict[int, object] = {}


def _number_and_publish(redis):
    script = _scripts.get(id(redis))
    if script is None:
        script = _scripts[id(redis)] = redis.register_script(_NUMBER_AND_PUBLISH)
    return script


def publish(account_id: str, data: dict, message_type: str = "order_update") -> dict | None:
    """Publish one update; a Redis failure is logged, never raised (the database is the record)."""
    try:
        redis = get_redis()
        message = build_message(account_id, data, -1, message_type)
        text = json.dumps(message, default=str)
        message["seq"] = int(_number_and_publish(redis)(
            keys=[f"orders:seq:{account_id}", channel(account_id)], args=[text, SEQ_PLACEHOLDER], client=redis))
        return message
    except Exception:
        log.warning("order update not published", exc_info=True, extra={"account_id": account_id})
        return None


def order_changed(order) -> dict | None:
    """Tell the world an order changed, after its transition is committed.

    Publishes the record (without its event list) on `orders:{account_id}`;
    webhooks subscribe to the same transitions (see app.webhooks.events); a rejection is
    counted by reason (app.orders.rejections). A slice's change then updates its parent
    (app.orders.parents), which is published in turn.
    """
    data = order_view(order, with_events=False)
    if order.status == REJECTED and order.role != "parent":
        # Counted once: REJECTED is final, so no later update of the order changes it and reaches here.
        # A sliced order's parent never reached the broker: its slices' rejections are the ones counted.
        count_rejection(order)
    message = publish(order.account_id, data)
    webhook_events.order_changed(order.account_id, data)
    if order.parent_id:
        # Every committed change of a slice passes here, whoever made it (worker, postback, WebSocket,
        # reconciler, cancel): its parent follows from this one place.
        from app.orders.parents import slice_changed  # parents publish through this module
        slice_changed(order)
    return message
