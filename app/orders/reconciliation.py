"""The broker's word about an order, applied to our record: postbacks, WebSocket order
messages, the worker's own reads, and the periodic reconciliation (`reconcile_all`, which
beat runs every few seconds: missed updates repaired, orders whose task was lost re-enqueued).

Updates are idempotent: the same update twice (postback and WebSocket both
deliver it) changes nothing the second time, and an older update never undoes
a newer one (a final status stays, filled quantity never goes down).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.accounts import credentials
from app.broker.client import broker_client
from app.broker.rate_limit import MINUTE_WINDOW_S
from app.core.config import Settings, get_settings
from app.core.db import new_session, session_scope
from app.models import Account, Order, OrderEvent, utcnow
from app.kite_session.refusals import noticed
from app.kite_session.state import is_live
from app.orders import dispatch, parents, postback_verification
from app.orders.parents import PARENT
from app.orders.attempts import apply_locked, submission_lease_s
from app.orders.states import (BROKER_FINAL, DEAD_LETTER, FINAL, OPEN, QUEUED, SUBMITTING, can_move,
                               from_broker_status, record_event, transition)
from app.orders.updates import order_changed

log = logging.getLogger(__name__)

# How long a dead-lettered order is still looked for at the broker by the reconciler.
DEAD_LETTER_RECHECK = timedelta(hours=24)

# Kite fields copied when the broker reports a modification.
_MODIFIABLE = ("quantity", "order_type", "validity")


def kite_checksum(order_id: str, order_timestamp: str, api_secret: str) -> str:
    return hashlib.sha256(f"{order_id}{order_timestamp}{api_secret}".encode()).hexdigest()


def _money(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(round(float(value), 2)))
    except (TypeError, ValueError, InvalidOperation):
        return None


def _int(value, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def find_order(session: Session, account_id: str | None, data: dict, lock: bool = False) -> Order | None:
    """Our order for a broker order dict: by broker order id, else by our tag."""
    query = None
    broker_order_id = data.get("order_id")
    if broker_order_id:
        query = select(Order).where(Order.broker_order_id == str(broker_order_id))
        if account_id:
            query = query.where(Order.account_id == account_id)
        order = session.scalars(query.with_for_update() if lock else query).first()
        if order is not None:
            return order
    tag = data.get("tag")
    if tag:
        query = select(Order).where(Order.tag == str(tag))
        if account_id:
            query = query.where(Order.account_id == account_id)
        return session.scalars(query.with_for_update() if lock else query).first()
    return None


def apply_to_order(session: Session, order: Order, data: dict, source: str) -> bool:
    """Merge one broker order dict into `order` (locked by the caller). True if anything changed."""
    broker_status = str(data.get("status") or "").upper() or None
    target = from_broker_status(broker_status)
    changed = False
    if order.status in BROKER_FINAL:
        return False  # a final answer from the broker is never revised by a late update
    if data.get("order_id") and not order.broker_order_id:
        order.broker_order_id = str(data["order_id"])
        changed = True
    if order.acked_at is None and order.broker_order_id:
        order.acked_at = utcnow()
    filled = max(_int(data.get("filled_quantity"), order.filled_quantity or 0), order.filled_quantity or 0)
    average = _money(data.get("average_price"))
    if average is not None and average == 0 and filled == 0:
        average = None
    message = data.get("status_message") or None
    raw_message = data.get("status_message_raw") or None
    detail = {"source": source, "broker_status": broker_status, "filled_quantity": filled}

    updates = {}
    if filled != (order.filled_quantity or 0):
        updates["filled_quantity"] = filled
    if average is not None and average != order.average_price:
        updates["average_price"] = average
    if message and message != order.status_message:
        updates["status_message"] = message
    if raw_message and raw_message != order.status_message_raw:
        updates["status_message_raw"] = raw_message
    if broker_status and broker_status != "UPDATE" and broker_status != order.broker_status:
        updates["broker_status"] = broker_status
    if broker_status == "UPDATE" or data.get("modified"):
        for name in _MODIFIABLE:
            if data.get(name) not in (None, "") and getattr(order, name) != data[name]:
                updates[name] = _int(data[name]) if name == "quantity" else data[name]
        if updates.get("validity") not in (None, "TTL") and order.validity_ttl is not None:
            updates["validity_ttl"] = None  # a TTL order modified to DAY or IOC no longer lapses
        for name in ("price", "trigger_price"):
            value = _money(data.get(name))
            if value is not None and value != 0 and value != getattr(order, name):
                updates[name] = value
    for name, value in updates.items():
        setattr(order, name, value)
    changed = changed or bool(updates)

    if target != order.status and can_move(order.status, target):
        error = message if target == "REJECTED" else None
        transition(session, order, target, error=error, detail=detail)
        return True
    if updates and order.status == OPEN:
        order.updated_at = utcnow()
        record_event(session, order, OPEN, OPEN, detail={**detail, "changes": sorted(updates)})
    return changed


def apply_broker_update(account_id: str | None, data: dict, source: str = "websocket") -> Order | None:
    """Apply a broker order dict (WebSocket order message, order book row). Returns the order if it changed.

    The stream worker calls this for every `{"type": "order"}` message.
    """
    with session_scope() as session:
        order = find_order(session, account_id, data, lock=True)
        if order is None:
            return None
        changed = apply_to_order(session, order, data, source)
    if changed:
        order_changed(order)
        return order
    return None


class PostbackRejected(Exception):
    """The postback names no order of ours, or its checksum is wrong."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def apply_postback(data: dict) -> Order | None:
    """Kite's HTTP postback: verify the checksum with the order's account secret, then apply what the
    broker confirms (app.orders.postback_verification: a final status or new fills are checked
    against the broker's order history first)."""
    order_id, timestamp, checksum = data.get("order_id"), data.get("order_timestamp"), data.get("checksum")
    if not all(isinstance(v, str) and v for v in (order_id, timestamp, checksum)):
        raise PostbackRejected("order_id, order_timestamp and checksum are required", 400)
    with new_session() as session:
        order = find_order(session, None, data)
        if order is None:
            raise PostbackRejected("no such order", 404)
        account = session.get(Account, order.account_id)
        secret = credentials(account).api_secret
    if not hmac.compare_digest(kite_checksum(order_id, timestamp, secret), checksum.lower()):
        raise PostbackRejected("checksum mismatch", 401)
    confirmed = postback_verification.verified(order, data)
    if confirmed is None:
        return None  # left to the reconciler, which reads the broker's order book
    return apply_broker_update(account.id, confirmed, source="postback")


def broker_orders_by_tag(rows: list[dict]) -> dict[str, dict]:
    """The broker's order book by tag; the latest row wins if a tag repeats (it should not)."""
    found: dict[str, dict] = {}
    for row in rows or []:
        tag = row.get("tag")
        if tag:
            found[str(tag)] = row
    return found


def stale_orders(session: Session, account_id: str, submitting_lease_s: float,
                 queued_lost_after_s: float) -> list[Order]:
    """Orders the reconciler must look at: OPEN ones, QUEUED/SUBMITTING ones whose worker seems
    gone, and recent DEAD_LETTER ones — a last attempt that timed out may have placed the order
    after all, and a trader must not be told it failed while it is live at the broker."""
    now = utcnow()
    recent = now - DEAD_LETTER_RECHECK
    query = select(Order).where(Order.account_id == account_id, Order.role != PARENT, or_(
        Order.status.not_in(FINAL), (Order.status == DEAD_LETTER) & (Order.updated_at > recent)))
    out = []
    for order in session.scalars(query):
        age = (now - order.updated_at).total_seconds()
        if order.status in (OPEN, DEAD_LETTER):
            out.append(order)
        elif order.status == SUBMITTING and age > submitting_lease_s:
            out.append(order)
        elif order.status == QUEUED and (age > queued_lost_after_s or _enqueue_failed(session, order)):
            out.append(order)
    return out


def _enqueue_failed(session: Session, order: Order) -> bool:
    last = session.scalars(select(OrderEvent).where(OrderEvent.order_id == order.id)
                           .order_by(OrderEvent.id.desc()).limit(1)).first()
    return bool(last and last.detail and last.detail.get("enqueue_failed"))


def requeue_lost(session: Session, order: Order, reason: str) -> bool:
    """A SUBMITTING order whose worker died (lease expired, nothing at the broker): back to QUEUED."""
    if order.status == SUBMITTING:
        transition(session, order, QUEUED, error=reason, detail={"source": "reconcile"})
        return True
    order.updated_at = utcnow()  # QUEUED: touched so it is not re-enqueued again at once
    record_event(session, order, QUEUED, QUEUED, detail={"source": "reconcile", "requeued": True})
    return False


# ---- the periodic reconciliation ------------------------------------------------------------

def queued_lost_after_s(settings: Settings | None = None) -> float:
    """A QUEUED order untouched this long has no live task: longer than any retry or rate deferral."""
    settings = settings or get_settings()
    return max(settings.order_retry_cap_s, MINUTE_WINDOW_S, submission_lease_s(settings)) + 30.0


def reconcile_account(account_id: str, queued_lost_after: float | None = None) -> dict:
    """Repair missed updates of one account's live orders; returns ids of orders to (re-)enqueue."""
    settings = get_settings()
    lease_s = submission_lease_s(settings)
    lost_after = queued_lost_after_s(settings) if queued_lost_after is None else queued_lost_after
    with new_session() as session:
        candidates = [o.id for o in stale_orders(session, account_id, lease_s, lost_after)]
    report = {"checked": len(candidates), "updated": 0, "requeue": []}
    if not candidates:
        return report
    kite = broker_client(account_id)
    book = kite.orders()
    by_tag = broker_orders_by_tag(book)
    by_id = {str(row.get("order_id")): row for row in book or []}
    cutoff = utcnow() - timedelta(seconds=lease_s)
    for order_id in candidates:
        outcome: dict = {}

        def apply(session, order):
            if order.status in FINAL and order.status != DEAD_LETTER:
                return False
            row = by_id.get(order.broker_order_id or "") or by_tag.get(order.tag)
            if order.status == DEAD_LETTER and row is None:
                return False  # really never placed: stays dead-lettered for the trader to replay
            if row is not None:
                changed = apply_to_order(session, order, row, source="reconcile")
                if order.status == SUBMITTING and order.updated_at < cutoff:
                    transition(session, order, OPEN, detail={"source": "reconcile"})
                    changed = True
                outcome["updated"] = changed
                return changed
            if order.status == SUBMITTING and order.updated_at < cutoff:
                outcome["requeue"] = True
                return requeue_lost(session, order, "submission lost (worker gone); re-queued by reconciliation")
            if order.status == QUEUED:
                outcome["requeue"] = True
                requeue_lost(session, order, "")
            return False

        apply_locked(order_id, apply)
        report["updated"] += 1 if outcome.get("updated") else 0
        if outcome.get("requeue"):
            report["requeue"].append(order_id)
    return report


def reconcile_all(queued_lost_after: float | None = None) -> dict:
    """Every account with live orders, one at a time; returns what was checked, updated and requeued."""
    with new_session() as session:
        account_ids = list(session.scalars(select(Order.account_id).where(
            Order.status.not_in(FINAL), Order.role != PARENT).distinct()))
    summary = {}
    for account_id in account_ids:
        if not is_live(account_id):
            continue  # its orders are held for the next login (app.kite_session.held_orders)
        try:
            report = reconcile_account(account_id, queued_lost_after)
        except Exception as exc:  # one account's broker trouble must not stop the others
            if not noticed(account_id, exc, "reconciler"):
                log.warning("reconciliation failed", extra={"account_id": account_id, "error": str(exc)})
            continue
        for order_id in report["requeue"]:
            dispatch.enqueue_placement(order_id, account_id)
        summary[account_id] = {"checked": report["checked"], "updated": report["updated"],
                               "requeued": len(report["requeue"])}
    try:  # parents follow their slices on every change; this repairs one whose refresh was lost
        parents.refresh_unsettled()
    except Exception as exc:
        log.warning("sliced orders not refreshed", extra={"error": str(exc)})
    _report_reconciliation(summary)
    return summary


def _report_reconciliation(summary: dict) -> None:
    """One INFO line when the reconciler changed something; DEBUG otherwise (it runs every few seconds)."""
    repaired = sum(s["updated"] for s in summary.values())
    requeued = sum(s["requeued"] for s in summary.values())
    if not (repaired or requeued):
        log.debug("reconciler: nothing to repair", extra={"accounts": len(summary)})
        return
    accounts = sorted(a for a, s in summary.items() if s["updated"] or s["requeued"])
    done = [f"repaired {repaired} order(s)" if repaired else "", f"re-enqueued {requeued} lost" if requeued else ""]
    log.info("reconciler %s (accounts: %s)", " and ".join(d for d in done if d), ", ".join(accounts),
             extra={"repaired": repaired, "requeued": requeued, "accounts": accounts})
