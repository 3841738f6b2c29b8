"""The order state machine, persisted: every transition is an OrderEvent row.

    QUEUED → SUBMITTING → OPEN → COMPLETE | CANCELLED | REJECTED
    SUBMITTING → QUEUED (transient failure, retry scheduled) | DEAD_LETTER (attempts exhausted)
    DEAD_LETTER → QUEUED (replay)
    QUEUED → EXPIRED (not sent before its expiry, app.orders.admission); SUBMITTING → EXPIRED only once
        the broker's order book showed that no earlier attempt placed it

A parent order (one sliced under the freeze quantity, app.orders.parents) never goes to the
broker: its status is the aggregate of its slices' (app.orders.parent_status), which adds
PARTIAL — final, some but not all of the quantity filled.

The broker's word wins over ours: an update from the broker (postback, WebSocket,
reconciliation) may move a QUEUED, SUBMITTING or DEAD_LETTER order straight to
what the broker says, because the order exists there — and so may it an EXPIRED one, which the
service never sends late but whose earlier attempt the broker may report after all.

Callers commit, then call `app.orders.updates.order_changed(order)`.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.broker import statuses as kite_statuses
from app.models import Order, OrderEvent, utcnow

QUEUED, SUBMITTING, OPEN = "QUEUED", "SUBMITTING", "OPEN"
COMPLETE, CANCELLED, REJECTED, DEAD_LETTER = "COMPLETE", "CANCELLED", "REJECTED", "DEAD_LETTER"
EXPIRED = "EXPIRED"  # not sent before its expiry (app.orders.admission): final, never placed late
PARTIAL = "PARTIAL"  # parents only

BROKER_FINAL = frozenset({COMPLETE, CANCELLED, REJECTED})
FINAL = BROKER_FINAL | {DEAD_LETTER, PARTIAL, EXPIRED}
# Not final: the statuses listed (rather than "not in FINAL") so the status indexes serve the queries.
LIVE = frozenset({QUEUED, SUBMITTING, OPEN})

ALLOWED: dict[str, frozenset[str]] = {
    QUEUED: frozenset({SUBMITTING, DEAD_LETTER, CANCELLED, OPEN, COMPLETE, REJECTED, EXPIRED}),
    SUBMITTING: frozenset({QUEUED, OPEN, COMPLETE, CANCELLED, REJECTED, DEAD_LETTER, EXPIRED}),
    OPEN: frozenset({OPEN, COMPLETE, CANCELLED, REJECTED}),
    DEAD_LETTER: frozenset({QUEUED, OPEN, COMPLETE, CANCELLED, REJECTED}),
    EXPIRED: frozenset({OPEN, COMPLETE, CANCELLED, REJECTED}),  # the broker's word only
    COMPLETE: frozenset(),
    CANCELLED: frozenset(),
    REJECTED: frozenset(),
    PARTIAL: frozenset(),
}


class InvalidTransition(Exception):
    pass


def from_broker_status(broker_status: str | None) -> str:
    """Our status for a Kite order status: its final ones are ours too; the rest mean live at the broker."""
    status = (broker_status or "").upper()
    return status if status in kite_statuses.FINAL else OPEN


def can_move(current: str, target: str) -> bool:
    return target in ALLOWED.get(current, frozenset())


def record_event(session: Session, order: Order, from_status: str | None, to_status: str,
                 error: str | None = None, detail: dict[str, Any] | None = None) -> OrderEvent:
    event = OrderEvent(order_id=order.id, at=utcnow(), from_status=from_status, to_status=to_status,
                       attempt=order.attempts or 0, error=error, detail=detail)
    session.add(event)
    return event


def transition(session: Session, order: Order, target: str, error: str | None = None,
               detail: dict[str, Any] | None = None) -> OrderEvent:
    """Move `order` (loaded FOR UPDATE or claimed by a conditional UPDATE) to `target`, with its event."""
    current = order.status
    if not can_move(current, target):
        raise InvalidTransition(f"order {order.id}: {current} → {target} is not allowed")
    order.status = target
    order.updated_at = utcnow()
    if error is not None:
        order.error = error
    return record_event(session, order, current, target, error, detail)
