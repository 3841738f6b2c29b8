"""Order, batch and account (Kite session) changes → webhook events → deliveries on the `webhooks` queue.

Called by app/orders/updates.py inside the order worker after every committed
transition, so it is cheap (one indexed query when the status maps to an event)
and never raises into the caller. Each (order, event) fires at most once: a
Redis SET NX claims it, so a repeated transition report (postback and poll both
seeing COMPLETE) does not notify twice.
"""
from __future__ import annotations

import logging

from app.core.db import session_scope
from app.core.redis_client import get_redis
from app.webhooks import delivery
from app.webhooks.registry import ACCOUNT_EVENTS, BATCH_EVENTS

log = logging.getLogger(__name__)

FINAL_EVENTS = {
    "COMPLETE": "order_completed",
    "CANCELLED": "order_cancelled",
    "REJECTED": "order_rejected",
    "DEAD_LETTER": "order_failed",
    "EXPIRED": "order_failed",  # not sent before its expiry (data.status says EXPIRED, data.error why)
}
# Statuses of an order the broker accepted: reaching one means it was placed.
PLACED_STATUSES = {"OPEN", "TRIGGER PENDING", "COMPLETE", "CANCELLED"}
CLAIM_TTL_S = 7 * 24 * 3600


def events_for(data: dict) -> list[str]:
    """The events an order record's status stands for, in the order they happened.

    An order filled before anyone saw it OPEN was still placed, so COMPLETE and
    CANCELLED imply order_placed (de-duplicated like every event).
    """
    status = (data.get("status") or "").upper()
    events = []
    if status in PLACED_STATUSES:
        events.append("order_placed")
    if status in FINAL_EVENTS:
        events.append(FINAL_EVENTS[status])
    return events


def order_changed(account_id: str, data: dict) -> list[str]:
    """Create and enqueue deliveries for the events of this transition; returns delivery ids."""
    try:
        order_id = data.get("order_id") or data.get("id")
        return _emit(account_id, events_for(data), data, f"order:{order_id}")
    except Exception:  # webhooks must never break order execution
        log.warning("webhook events not emitted", exc_info=True, extra={"account_id": account_id})
        return []


def batch_event(account_id: str, event: str, data: dict) -> list[str]:
    """`batch_completed` or `batch_rolled_back` for a batch record."""
    try:
        if event not in BATCH_EVENTS:
            raise ValueError(f"not a batch event: {event}")
        return _emit(account_id, [event], data, f"batch:{data.get('batch_id')}")
    except Exception:
        log.warning("batch webhook event not emitted", exc_info=True, extra={"account_id": account_id})
        return []


def account_event(account_id: str, event: str, data: dict, subject: str) -> list[str]:
    """An event of the account itself (`account.session_expired`), once per `subject`."""
    try:
        if event not in ACCOUNT_EVENTS:
            raise ValueError(f"not an account event: {event}")
        return _emit(account_id, [event], data, subject)
    except Exception:
        log.warning("account webhook event not emitted", exc_info=True, extra={"account_id": account_id})
        return []


def _emit(account_id: str, events: list[str], data: dict, subject: str) -> list[str]:
    """Deliveries for each event a webhook of the account subscribes to (no query when none does)."""
    from app.webhooks.registry import subscribed_webhooks

    wanted = [event for event in events if subscribed_webhooks(account_id, event)]
    if not wanted:
        return []
    ids: list[str] = []
    with session_scope() as session:
        for event in wanted:
            # Claim (subject, event) once; only the first claimant creates deliveries.
            if get_redis().set(f"webhooks:emitted:{subject}:{event}", "1", nx=True, ex=CLAIM_TTL_S):
                ids += delivery.create_deliveries(session, account_id, event, data)
    for delivery_id in ids:  # after commit: the worker must find the row
        delivery.enqueue(delivery_id)
    return ids
