"""The broker's word about an order, applied to our record: postbacks, WebSocket order
messages, the worker's own reads, and the periodic reconciliation (`reconcile_all`, which
beat runs every few seconds: missed updates repaired, unsent orders past their expiry whose task is
gone EXPIRED, orders whose enqueue failed re-enqueued). Its cost follows the orders in flight, not the
history: it reads only non-final orders (and, once a minute, recent dead letters), a page at a time, and
asks the broker for an account's order book once a pass, only when one of them needs it.

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

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.accounts import credentials
from app.broker.client import broker_client
from app.broker.rate_limit import MINUTE_WINDOW_S, other_calls_rate_limiter
from app.core.config import ORDER_MAX_QUEUE_S_LIMIT, Settings, get_settings
from app.core.db import new_session, session_scope
from app.core.redis_client import get_redis
from app.models import Account, Order, OrderEvent, utcnow
from app.kite_session.refusals import noticed
from app.kite_session.state import is_live
from app.orders import admission, dispatch, parents, postback_verification
from app.orders.parents import PARENT
from app.orders.attempts import apply_locked, submission_lease_s
from app.orders.states import (BROKER_FINAL, DEAD_LETTER, EXPIRED, FINAL, LIVE, OPEN, QUEUED, SUBMITTING,
                               can_move, from_broker_status, record_event, transition)
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


RECONCILE_PAGE_SIZE = 500  # orders read per query: a pass's memory does not grow with the backlog
DEAD_LETTER_RECHECK_EVERY_S = 60.0  # an account's recent dead letters are looked for this often, not every pass
EXPIRY_GRACE_S = 2.0  # past its expiry a QUEUED order's own task expires it; after this the reconciler does


def queued_lost_after_s(settings: Settings | None = None) -> float:
    """A QUEUED order untouched this long (and not waiting for a reserved slot) has no live task: longer
    than any retry — and than any order's expiry, so by default an unexpired order is never taken for lost."""
    settings = settings or get_settings()
    return max(settings.order_retry_cap_s, MINUTE_WINDOW_S, ORDER_MAX_QUEUE_S_LIMIT,
               submission_lease_s(settings)) + 30.0


def _lapsed(order: Order, now) -> bool:
    return now > admission.expiry_of(order) + timedelta(seconds=EXPIRY_GRACE_S)


def _enqueue_failed(orders: list[Order]) -> set[str]:
    """Those whose last event says Redis refused their enqueue (one query for the page)."""
    if not orders:
        return set()
    last = select(func.max(OrderEvent.id)).where(OrderEvent.order_id.in_([o.id for o in orders])) \
        .group_by(OrderEvent.order_id)
    with new_session() as session:
        return {e.order_id for e in session.scalars(select(OrderEvent).where(OrderEvent.id.in_(last)))
                if e.detail and e.detail.get("enqueue_failed")}


def _due(page: list[Order], lease_s: float, lost_after: float) -> list[str]:
    """The orders of a page the reconciler must look at: OPEN ones; SUBMITTING ones whose worker seems
    gone; QUEUED ones past their expiry (their task is gone), whose enqueue failed, or idle for `lost_after`
    since they were last touched or due (a deferred order is alive: its task wakes at `send_at`); and the
    recent DEAD_LETTER ones read — a last attempt that timed out may have placed the order after all, and
    a trader must not be told it failed while it is live at the broker."""
    now = utcnow()
    due, unclaimed = [], []
    for order in page:
        age = (now - order.updated_at).total_seconds()
        if order.status in (OPEN, DEAD_LETTER):
            due.append(order.id)
        elif order.status == SUBMITTING and age > lease_s:
            due.append(order.id)
        elif order.status == QUEUED:
            idle_since = max(order.updated_at, order.send_at) if order.send_at else order.updated_at
            if _lapsed(order, now) or (now - idle_since).total_seconds() > lost_after:
                due.append(order.id)
            elif order.attempts == 0 and order.send_at is None:
                unclaimed.append(order)  # no worker has looked at it yet: was it ever enqueued?
    return due + sorted(_enqueue_failed(unclaimed))


def _pages(account_id: str, statuses, page_size: int):
    """The account's orders in `statuses` (a where clause), page by page (keyset on the id), detached."""
    after = ""
    while True:
        with new_session() as session:
            page = list(session.scalars(select(Order).where(
                Order.account_id == account_id, Order.role != PARENT, statuses, Order.id > after)
                .order_by(Order.id).limit(page_size)))
            session.expunge_all()
        yield page
        if len(page) < page_size:
            return
        after = page[-1].id


def _wanted(dead_letters: bool):
    live = Order.status.in_(LIVE)
    if not dead_letters:
        return live
    return or_(live, (Order.status == DEAD_LETTER) & (Order.updated_at > utcnow() - DEAD_LETTER_RECHECK))


def requeue_lost(session: Session, order: Order, reason: str) -> bool:
    """A SUBMITTING order whose worker died (lease expired, nothing at the broker): back to QUEUED."""
    if order.status == SUBMITTING:
        transition(session, order, QUEUED, error=reason, detail={"source": "reconcile"})
        return True
    order.updated_at = utcnow()  # QUEUED: touched so it is not re-enqueued again at once
    record_event(session, order, QUEUED, QUEUED, detail={"source": "reconcile", "requeued": True})
    return False


def _expire(session: Session, order: Order, looked_up: bool) -> bool:
    transition(session, order, EXPIRED, error=admission.lapsed_error(order),
               detail={"source": "reconcile", "looked_up": looked_up})
    return True


# ---- the periodic reconciliation ------------------------------------------------------------

def reconcile_account(account_id: str, queued_lost_after: float | None = None,
                      page_size: int = RECONCILE_PAGE_SIZE, dead_letters: bool = True) -> dict:
    """Repair missed updates of one account's live orders (and its recent dead letters) and expire the
    unsent ones whose task is gone, reading its non-final orders page by page and the broker's order
    book once — only when some order needs it. Returns what it did, and the ids to (re-)enqueue."""
    settings = get_settings()
    lease_s = submission_lease_s(settings)
    lost_after = queued_lost_after_s(settings) if queued_lost_after is None else queued_lost_after
    report = {"checked": 0, "updated": 0, "expired": 0, "requeue": []}
    book = None
    for page in _pages(account_id, _wanted(dead_letters), page_size):
        due = _due(page, lease_s, lost_after)
        if not due:
            continue
        if book is None:
            rows = _order_book(account_id)
            book = (broker_orders_by_tag(rows), {str(row.get("order_id")): row for row in rows or []})
        report["checked"] += len(due)
        for order_id in due:
            _reconcile_order(order_id, *book, lease_s, report)
    return report


BOOK_WAIT_S = 2.0  # the longest the reconciler waits for a slot among the account's non-order calls


def _order_book(account_id: str) -> list[dict]:
    """The broker's order book: one of Kite's non-order calls, within their 10 a second (postback checks
    and margin checks share them); not read this pass when no slot comes soon."""
    if not other_calls_rate_limiter().acquire(account_id, placement=False, max_wait_s=BOOK_WAIT_S).granted:
        raise RuntimeError("the order book was not read: Kite's non-order calls of the account are at their limit")
    return broker_client(account_id).orders()


def _reconcile_order(order_id: str, by_tag: dict, by_id: dict, lease_s: float, report: dict) -> None:
    outcome: dict = {}

    def apply(session, order):
        if order.status in FINAL and order.status != DEAD_LETTER:
            return False
        now = utcnow()
        claim_lost = order.status == SUBMITTING and (now - order.updated_at).total_seconds() > lease_s
        row = by_id.get(order.broker_order_id or "") or by_tag.get(order.tag)
        if order.status == DEAD_LETTER and row is None:
            return False  # really never placed: stays dead-lettered for the trader to replay
        if row is not None:
            changed = apply_to_order(session, order, row, source="reconcile")
            if order.status == SUBMITTING and claim_lost:
                transition(session, order, OPEN, detail={"source": "reconcile"})
                changed = True
            outcome["updated"] = changed
            return changed
        if order.status not in (QUEUED, SUBMITTING) or (order.status == SUBMITTING and not claim_lost):
            return False
        if _lapsed(order, now):  # not at the broker and past its expiry: it is never sent now
            outcome["expired"] = True
            return _expire(session, order, looked_up=True)
        outcome["requeue"] = True
        if order.status == SUBMITTING:
            return requeue_lost(session, order, "submission lost (worker gone); re-queued by reconciliation")
        return requeue_lost(session, order, "")

    apply_locked(order_id, apply)
    report["updated"] += 1 if outcome.get("updated") or outcome.get("expired") else 0
    report["expired"] += 1 if outcome.get("expired") else 0
    if outcome.get("requeue"):
        report["requeue"].append(order_id)


def expire_held(account_id: str, page_size: int = RECONCILE_PAGE_SIZE) -> int:
    """An account without a live session (its orders held for the next login): its QUEUED orders past
    their expiry that no worker ever claimed — so never sent — end EXPIRED now, without the broker.
    Those an attempt may have placed are looked up once the account logs in again."""
    expired = 0
    for page in _pages(account_id, Order.status == QUEUED, page_size):
        now = utcnow()
        lapsed = [o.id for o in page if _lapsed(o, now)]
        if not lapsed:
            continue
        with new_session() as session:
            claimed = set(session.scalars(select(OrderEvent.order_id).where(
                OrderEvent.order_id.in_(lapsed), OrderEvent.to_status == SUBMITTING).distinct()))
        for order_id in lapsed:
            if order_id in claimed:
                continue
            outcome: dict = {}

            def apply(session, order):
                if order.status != QUEUED or not _lapsed(order, utcnow()):
                    return False
                outcome["expired"] = True
                return _expire(session, order, looked_up=False)

            apply_locked(order_id, apply)
            expired += 1 if outcome.get("expired") else 0
    return expired


def _dead_letters_due(account_id: str) -> bool:
    """Recent dead letters are looked for once a minute per account (one Redis key), not every pass."""
    try:
        return bool(get_redis().set(f"reconcile:dead_letters:{account_id}", "1", nx=True,
                                    px=int(DEAD_LETTER_RECHECK_EVERY_S * 1000)))
    except Exception:
        return True


def reconcile_all(queued_lost_after: float | None = None) -> dict:
    """Every account with non-final orders (or recent dead letters due a look), one at a time; returns what
    was checked, updated (expired included) and requeued per account. Two indexed queries find them."""
    with new_session() as session:
        live = set(session.scalars(select(Order.account_id).where(
            Order.status.in_(LIVE), Order.role != PARENT).distinct()))
        with_dead_letters = set(session.scalars(select(Order.account_id).where(
            Order.status == DEAD_LETTER, Order.updated_at > utcnow() - DEAD_LETTER_RECHECK).distinct()))
    summary = {}
    for account_id in sorted(live | with_dead_letters):
        if not is_live(account_id):  # its orders are held for the next login (app.kite_session.held_orders)
            expired = expire_held(account_id) if account_id in live else 0
            if expired:
                summary[account_id] = {"checked": expired, "updated": expired, "requeued": 0, "expired": expired}
            continue
        dead_letters = account_id in with_dead_letters and _dead_letters_due(account_id)
        if account_id not in live and not dead_letters:
            continue
        try:
            report = reconcile_account(account_id, queued_lost_after, dead_letters=dead_letters)
        except Exception as exc:  # one account's broker trouble must not stop the others
            if not noticed(account_id, exc, "reconciler"):
                log.warning("reconciliation failed", extra={"account_id": account_id, "error": str(exc)})
            continue
        for order_id in report["requeue"]:
            dispatch.enqueue_placement(order_id, account_id)
        summary[account_id] = {"checked": report["checked"], "updated": report["updated"],
                               "requeued": len(report["requeue"]), "expired": report["expired"]}
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
    expired = sum(s["expired"] for s in summary.values())
    if not (repaired or requeued):
        log.debug("reconciler: nothing to repair", extra={"accounts": len(summary)})
        return
    accounts = sorted(a for a, s in summary.items() if s["updated"] or s["requeued"])
    done = [f"repaired {repaired} order(s)" + (f" ({expired} expired unsent)" if expired else "") if repaired else "",
            f"re-enqueued {requeued} lost" if requeued else ""]
    log.info("reconciler %s (accounts: %s)", " and ".join(d for d in done if d), ", ".join(accounts),
             extra={"repaired": repaired, "requeued": requeued, "expired": expired, "accounts": accounts})
