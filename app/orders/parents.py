"""Sliced orders: a parent order above the freeze quantity and its slices.

The parent is the record a client placed and reads (GET /orders/{id}); it never goes to the
broker. Each slice is an order of its own (role "slice", `parent_id`) that takes the exactly-once
path with its own tag, so retries, reconciliation, postbacks and the order stream handle it as
any order. Whenever a slice changes, `refresh_parent` recomputes the parent from its slices
(app.orders.parent_status) and publishes it; the reconciler refreshes unsettled parents too, in
case a process died between a slice's commit and that refresh.
"""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.core.db import new_session, session_scope
from app.models import Order, OrderEvent, utcnow
from app.orders import dispatch
from app.orders.parent_status import aggregate
from app.orders.states import OPEN, QUEUED, SUBMITTING, record_event
from app.orders.updates import order_changed

log = logging.getLogger(__name__)

PARENT, SLICE = "parent", "slice"
LIVE = (QUEUED, SUBMITTING, OPEN)  # a parent's statuses before it is final


def slices_of(session: Session, parent_id: str) -> list[Order]:
    return list(session.scalars(select(Order).where(Order.parent_id == parent_id).order_by(Order.slice_index)))


def _apply(session: Session, parent: Order, slices: list[Order]) -> bool:
    """Write the aggregate onto the locked parent; True if anything a client sees changed."""
    result = aggregate(slices)
    changes = {name: value for name, value in (("filled_quantity", result.filled_quantity),
                                                ("average_price", result.average_price),
                                                ("error", result.error))
               if getattr(parent, name) != value}
    if result.status == parent.status and not changes:
        return False
    for name, value in changes.items():
        setattr(parent, name, value)
    if result.status != parent.status:
        record_event(session, parent, parent.status, result.status, error=result.error,
                     detail={"source": "slices", "filled_quantity": result.filled_quantity,
                             "slices": {s.id: s.status for s in slices}})
        parent.status = result.status
    parent.updated_at = utcnow()
    return True


def _open_slices_to_cancel(session: Session, slices: list[Order]) -> list[Order]:
    """OPEN slices of a cancelled parent whose cancellation was not asked for yet (each is asked once)."""
    live = [s for s in slices if s.status == OPEN and s.broker_order_id]
    if not live:
        return []
    asked = {e.order_id for e in session.scalars(select(OrderEvent).where(
        OrderEvent.order_id.in_([s.id for s in live]))) if (e.detail or {}).get("request") == "cancel"}
    due = [s for s in live if s.id not in asked]
    for child in due:
        record_event(session, child, OPEN, OPEN, detail={"request": "cancel", "source": "parent"})
    return due


def refresh_parent(parent_id: str) -> bool:
    """Recompute the parent from its slices (locked, so concurrent slice updates serialise), publish it
    if it changed, and ask for the cancellation of slices that went OPEN after the parent was cancelled.
    True if the parent changed."""
    with session_scope() as session:
        parent = session.get(Order, parent_id, with_for_update=True)
        if parent is None or parent.role != PARENT:
            return False
        slices = slices_of(session, parent_id)
        changed = _apply(session, parent, slices)
        to_cancel = _open_slices_to_cancel(session, slices) if parent.cancel_requested_at else []
        set_committed_value(parent, "children", slices)
    for child in to_cancel:
        dispatch.enqueue_cancellation(child.id, child.account_id)
    if changed:
        order_changed(parent)
    return changed


def slice_changed(order: Order) -> None:
    """A slice's change is committed: its parent follows. Never raises into the slice's own path
    (a placement must not be retried because its parent could not be updated); the reconciler
    repairs a parent left behind."""
    try:
        refresh_parent(order.parent_id)
    except Exception:
        log.warning("parent order not refreshed; the reconciler will", exc_info=True,
                    extra={"order_id": order.id, "parent_id": order.parent_id})


def refresh_unsettled() -> int:
    """Refresh every parent not yet final (the reconciler's repair); returns how many changed."""
    with new_session() as session:
        # Live statuses listed (not "not final"), so the status index serves this query every few seconds.
        parent_ids = list(session.scalars(select(Order.id).where(Order.status.in_(LIVE), Order.role == PARENT)))
    return sum(1 for parent_id in parent_ids if refresh_parent(parent_id))
