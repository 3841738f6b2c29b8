"""Orders held while their account's Kite session is dead.

An order already queued when the session dies is not retried into the dead-letter queue: the
worker leaves it QUEUED, says on the order why it waits (`held_reason`), and sends nothing.
A login (app.kite_session.announce.session_started) enqueues every held order again; an order
whose own expiry passes meanwhile (validity TTL: accepted + validity_ttl minutes) is cancelled
unsent instead — a trader expects no order to go out after the time it gave.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from app.core.db import new_session
from app.models import Order, utcnow
from app.orders import dispatch
from app.orders.attempts import apply_locked
from app.orders.parents import PARENT
from app.orders.states import CANCELLED, QUEUED, SUBMITTING, record_event, transition

log = logging.getLogger(__name__)

HELD = "the Kite session of the account has expired: held until it logs in again"


def expiry_of(order: Order) -> datetime | None:
    """When the order itself lapses, if it says so (validity TTL); None: it waits for the login."""
    if order.validity == "TTL" and order.validity_ttl and order.accepted_at:
        return order.accepted_at + timedelta(minutes=order.validity_ttl)
    return None


RETRY_WITH_NEW_TOKEN = "the broker refused an access token a newer login has replaced: sent again"


def hold(order_id: str, from_submitting: bool = False, held: bool = True) -> str:
    """Leave the order QUEUED and unsent (from SUBMITTING: the claim is undone and its attempt given
    back, since the broker refused the call before looking at the order). Returns its status.
    `held=False`: only undo the claim (a newer token exists: the caller sends it again at once)."""
    result = {"status": QUEUED}

    def apply(session, order):
        if order.status != (SUBMITTING if from_submitting else QUEUED):
            result["status"] = order.status
            return False
        expiry = expiry_of(order)
        if expiry is not None and expiry <= utcnow():
            transition(session, order, CANCELLED, error="expired (validity TTL) while held: the Kite session "
                       "of the account was dead", detail={"source": "session_expired"})
            result["status"] = CANCELLED
            return True
        if from_submitting:
            transition(session, order, QUEUED, error=HELD if held else RETRY_WITH_NEW_TOKEN,
                       detail={"held": "session_expired"} if held else {"retry": "new_access_token"})
            order.attempts = max(0, order.attempts - 1)
            return True
        if order.error == HELD:
            return False  # already says so: no event per worker pass
        order.error = HELD
        order.updated_at = utcnow()
        record_event(session, order, QUEUED, QUEUED, detail={"held": "session_expired"})
        return True

    apply_locked(order_id, apply)
    return result["status"]


def held_order_ids(account_id: str) -> list[str]:
    """The account's held orders, oldest first (a QUEUED order not marked held still has its task,
    which holds it when it runs while the session is dead, or sends it after the login)."""
    with new_session() as session:
        return list(session.scalars(select(Order.id).where(
            Order.account_id == account_id, Order.status == QUEUED, Order.role != PARENT, Order.error == HELD)
            .order_by(Order.created_at)))


def _unhold(order_id: str) -> None:
    def apply(session, order):
        if order.status != QUEUED or order.error != HELD:
            return False
        order.error = None
        order.updated_at = utcnow()
        record_event(session, order, QUEUED, QUEUED, detail={"released": "login"})
        return True

    apply_locked(order_id, apply)


def release(account_id: str) -> int:
    """After a login: every held order of the account goes to the workers again (the exactly-once
    claim makes a second task for an order that still had one harmless)."""
    sent = 0
    for order_id in held_order_ids(account_id):
        _unhold(order_id)
        if dispatch.enqueue_placement(order_id, account_id):
            sent += 1
    if sent:
        log.info("held orders released after login", extra={"account_id": account_id, "orders": sent})
    return sent


def cancel_lapsed(now: datetime | None = None) -> int:
    """Beat: held orders whose own expiry has passed are cancelled unsent."""
    now = now or utcnow()
    with new_session() as session:
        candidates = list(session.scalars(select(Order).where(
            Order.status == QUEUED, Order.role != PARENT, Order.error == HELD, Order.validity == "TTL")))
        due = [o.id for o in candidates if (expiry_of(o) or now) < now]
    for order_id in due:
        hold(order_id)
    return len(due)
