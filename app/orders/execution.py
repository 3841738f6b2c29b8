"""Sending orders to the broker exactly once: the core the Celery tasks run.

`submit_order(order_id)` is one attempt of the exactly-once path:

1. its turn at the rate limiter of the account's Zerodha user (app.broker.rate_limit): the order reserves
   its send slot once, under its own id and in arrival order (batch legs, reversals and square-offs
   first); while the slot is far off the task is deferred until then (no attempt spent), and the
   order shows it (`send_at`, a "deferred until" event) so nobody takes it for lost; at wake the task
   takes the slot it holds and sends at it (`confirm`, right before the call: a task that came late
   gives the slot up and takes the next free one). No slot before the order's expiry
   (app.orders.admission): EXPIRED;
2. claim the order with a compare-and-set UPDATE (QUEUED → SUBMITTING, attempts + 1;
   a SUBMITTING order is claimable only after its lease — longer than any broker
   call — has expired, so two workers never submit one order concurrently);
3. if an earlier attempt may have reached the broker, look the order's tag up in
   the broker's order book and adopt what is there instead of placing again;
4. check the clock against the order's expiry once more (EXPIRED rather than placed late — an
   order an earlier attempt may have placed only after the tag lookup found nothing);
5. take one placement from the day's order budget (app.broker.order_budget), place it, record
   the broker's answer. With the budget used up the order is REJECTED unsent: Kite would refuse
   it too, and a trader expects no order of today to go out tomorrow.

It returns what the task must do next (done, retry after a backoff, or defer
without spending an attempt); it never sleeps for long and never loops: retries
are Celery's.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.broker.circuit_breaker import order_circuit_breaker
from app.broker.client import broker_client
from app.broker.errors import describe, is_final_rejection
from app.broker.order_budget import order_budget
from app.broker.order_limit_keys import order_limit_key
from app.broker.rate_limit import NONE, WAITING, order_rate_limiter
from app.core.config import ORDER_MAX_QUEUE_S_LIMIT, get_settings
from app.core.db import new_session
from app.core.timestamps import iso
from app.models import Account, Order, utcnow
from app.kite_session.held_orders import HELD, hold
from app.kite_session.refusals import noticed
from app.kite_session.state import is_live
from app.orders import admission, metrics as order_metrics
from app.orders.parents import PARENT
from app.orders.attempts import Outcome, apply_locked, backoff_s, submission_lease_s
from app.orders.budget import refusal_at_send
from app.orders.reconciliation import apply_to_order, broker_orders_by_tag
from app.orders.states import (DEAD_LETTER, EXPIRED, FINAL, OPEN, QUEUED, REJECTED, SUBMITTING, record_event,
                               transition)
from app.orders.updates import order_changed
from app.risk.halt import refuse_if_halted

log = logging.getLogger(__name__)


def placement_params(order: Order) -> dict:
    params = {
        "variety": order.variety, "exchange": order.exchange, "tradingsymbol": order.tradingsymbol,
        "transaction_type": order.transaction_type, "quantity": order.quantity, "product": order.product,
        "order_type": order.order_type, "validity": order.validity, "tag": order.tag,
    }
    if order.price is not None:
        params["price"] = float(order.price)
    if order.trigger_price is not None:
        params["trigger_price"] = float(order.trigger_price)
    if order.validity == "TTL":
        params["validity_ttl"] = order.validity_ttl
    if order.disclosed_quantity:
        params["disclosed_quantity"] = order.disclosed_quantity
    if order.market_protection is not None:
        params["market_protection"] = order.market_protection
    elif order.order_type in ("MARKET", "SL-M"):
        params["market_protection"] = -1  # automatic; Kite refuses these without protection
    return params


# A slot at most this far off is waited for in-process; a later one defers the task until then (the
# order keeps its slot, so a deferral costs nothing but the task's message, and frees the process).
SLOT_WAIT_INLINE_S = 0.25
WAKE_EARLY_S = 0.1  # a deferred task wakes this much before its slot, and sleeps the rest in-process


def _may_exist(order: Order) -> bool:
    """An earlier attempt (failed, timed out, cut off by a crash, or before a replay) may have placed it."""
    return order.attempts > 0 or order.error is not None


def _waiting_order(order_id: str) -> tuple[Order, str] | Outcome:
    """The order as it waits to be sent (detached) and the key of its account's order limits (its Zerodha
    user, read in the same session: a login may have just named it), or what the task does when it no
    longer waits."""
    with new_session() as session:
        order = session.get(Order, order_id)
        if order is None:
            return Outcome("done", error="no such order")
        if order.status in FINAL or order.status == OPEN:
            return Outcome("done", status=order.status)
        if order.role == PARENT:  # a sliced order is placed by its slices, never itself
            return Outcome("done", status=order.status, error="a sliced order is placed by its slices")
        broker_user_id = session.scalar(select(Account.broker_user_id).where(Account.id == order.account_id))
        session.expunge(order)
        return order, order_limit_key(order.account_id, broker_user_id)  # Kite counts orders per Zerodha account


@dataclass(frozen=True)
class _Turn:
    """The order's turn at the rate limiter: send at `slot_at`, wait (`defer`), or none before its expiry."""

    slot_at: float | None = None
    defer: Outcome | None = None
    too_late: str | None = None


def _turn(order: Order, limit_key: str, max_inline_s: float) -> _Turn:
    """Take the slot the order reserved, or reserve one (once: it keeps it while its task is deferred)."""
    limiter = order_rate_limiter()
    held = limiter.take(limit_key, order.id, max_inline_s)
    if held.state == NONE:
        reservation = limiter.reserve(limit_key, placement=True, max_wait_s=ORDER_MAX_QUEUE_S_LIMIT,
                                      member=order.id, rank=admission.rank_of(order),
                                      deadline=admission.latest_slot(order), max_inline_s=max_inline_s)
        if not reservation.granted:
            return _Turn(too_late=admission.no_slot_error(order, limit_key, reservation.slot_at))
        held = reservation
        waiting = reservation.queued
    else:
        waiting = held.state == WAITING
    if waiting:
        if order.send_at is None or abs(order.send_at.timestamp() - held.slot_at) > 0.001:
            _record_deferral(order.id, held.slot_at)  # once per slot: the order is visibly alive
        return _Turn(defer=Outcome("defer", countdown=max(0.0, held.wait_s - WAKE_EARLY_S), status=order.status))
    return _Turn(slot_at=held.slot_at)  # close: claimed now, sent at the slot (see `confirm` below)


def _record_deferral(order_id: str, slot_at: float) -> None:
    send_at = datetime.fromtimestamp(slot_at, timezone.utc)

    def apply(session, order):
        if order.status != QUEUED:
            return False
        order.send_at = send_at
        order.updated_at = utcnow()
        record_event(session, order, QUEUED, QUEUED,
                     detail={"deferred_until": iso(send_at), "reason": "order rate limit"})
        return True
    apply_locked(order_id, apply)


def _expire_unsent(order_id: str, error: str) -> Outcome | None:
    """QUEUED → EXPIRED for an order no attempt can have placed; None when it may have been (it is
    looked up at the broker first) or it moved on meanwhile."""
    result: dict = {}

    def apply(session, order):
        if order.status != QUEUED or _may_exist(order):
            return False
        transition(session, order, EXPIRED, error=error, detail={"source": "admission"})
        result["outcome"] = Outcome("done", status=EXPIRED, error=error)
        return True
    apply_locked(order_id, apply)
    return result.get("outcome")


def _expire_claimed(order_id: str, error: str, looked_up: bool) -> Outcome:
    """SUBMITTING → EXPIRED, never sent by this claim (and, if `looked_up`, not in the broker's book)."""
    result: dict = {}

    def apply(session, order):
        if order.status != SUBMITTING:
            result["status"] = order.status
            return False
        transition(session, order, EXPIRED, error=error, detail={"source": "admission", "looked_up": looked_up})
        result["status"] = EXPIRED
        return True
    apply_locked(order_id, apply)
    return Outcome("done", status=result.get("status"), error=error)


def _unclaim(order_id: str, attempt: int) -> Outcome:
    """SUBMITTING → QUEUED, its attempt given back: claimed for a slot it came too late for, nothing sent.
    The task runs again at once and reserves a new slot (its rank keeps its place)."""
    def apply(session, order):
        if order.status != SUBMITTING or order.attempts != attempt:
            return False
        transition(session, order, QUEUED, detail={"late_for_slot": True})
        order.attempts = attempt - 1
        return True
    apply_locked(order_id, apply)
    return Outcome("defer", countdown=0.0, status=QUEUED)


def _claim(order_id: str, lease_s: float, slot_at: float | None = None) -> tuple[Order | None, Outcome | None]:
    """Compare-and-set the order into SUBMITTING (with its send slot, if it took one). Returns (claimed
    order, None) or (None, what to do)."""
    session = new_session()
    try:
        order = session.get(Order, order_id)
        if order is None:
            return None, Outcome("done", error="no such order")
        if order.status not in (QUEUED, SUBMITTING):
            return None, Outcome("done", status=order.status)
        if order.role == PARENT:  # a sliced order is placed by its slices, never itself
            return None, Outcome("done", status=order.status, error="a sliced order is placed by its slices")
        now = utcnow()
        if order.status == SUBMITTING:
            held_for = (now - order.updated_at).total_seconds()
            if held_for < lease_s:  # another worker is (or was just) inside the broker call
                return None, Outcome("defer", countdown=lease_s - held_for + 0.1, status=SUBMITTING)
        previous, attempts = order.status, order.attempts
        values = {"status": SUBMITTING, "attempts": attempts + 1, "updated_at": now}
        if slot_at is not None:
            values["send_at"] = datetime.fromtimestamp(slot_at, timezone.utc)
        result = session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == previous, Order.attempts == attempts,
                   Order.updated_at == order.updated_at)
            .values(**values)
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            session.rollback()
            return None, Outcome("defer", countdown=0.05)  # lost a race: look again
        for name, value in values.items():
            set_committed_value(order, name, value)
        detail = {"reclaimed_after_lease": True} if previous == SUBMITTING else None
        record_event(session, order, previous, SUBMITTING, detail=detail)
        session.commit()
        session.expunge(order)
        return order, None
    finally:
        session.close()


def _record_ack(order_id: str, broker_order_id: str, acked) -> Order | None:
    def apply(session, order):
        if not order.broker_order_id:
            order.broker_order_id = broker_order_id
        first_ack = order.acked_at is None
        # A postback may have arrived before the HTTP answer: keep the earlier time.
        order.acked_at = min(order.acked_at or acked, acked)
        if order.accepted_at:  # one successful placement per order: observed exactly once
            order_metrics.observe_execution((acked - order.accepted_at).total_seconds())
        if order.status == SUBMITTING:  # a postback may have moved it on already
            transition(session, order, OPEN, detail={"broker_order_id": broker_order_id})
            return True
        return first_ack
    return apply_locked(order_id, apply)


def _adopt(order_id: str, broker_order: dict) -> Order | None:
    def apply(session, order):
        first_ack = order.acked_at is None
        changed = apply_to_order(session, order, broker_order, source="tag_lookup")
        if first_ack and order.acked_at and order.accepted_at:
            order_metrics.observe_execution((order.acked_at - order.accepted_at).total_seconds())
        if order.status == SUBMITTING:  # the broker's status did not move it (cannot happen for a found order)
            transition(session, order, OPEN, detail={"broker_order_id": order.broker_order_id})
            changed = True
        return changed
    return apply_locked(order_id, apply)


def _reject(order_id: str, error: str, source: str = "broker_error") -> Order | None:
    def apply(session, order):
        if order.status != SUBMITTING:
            return False
        transition(session, order, REJECTED, error=error, detail={"source": source})
        return True
    return apply_locked(order_id, apply)


def _fail_transient(order_id: str, error: str, max_attempts: int, countdown: float) -> Outcome:
    """Back to QUEUED with a retry, or DEAD_LETTER when the budget is spent."""
    result: dict = {}

    def apply(session, order):
        if order.status != SUBMITTING:  # the broker already told us where the order is
            result["outcome"] = Outcome("done", status=order.status)
            return False
        if order.attempts >= max_attempts:
            transition(session, order, DEAD_LETTER, error=f"gave up after {order.attempts} attempts: {error}",
                       detail={"last_error": error})
            result["outcome"] = Outcome("done", status=DEAD_LETTER, error=error)
            return True
        transition(session, order, QUEUED, error=error, detail={"retry_in_s": round(countdown, 3)})
        result["outcome"] = Outcome("retry", countdown=countdown, status=QUEUED, error=error)
        return True

    apply_locked(order_id, apply)
    outcome = result.get("outcome", Outcome("done"))
    if outcome.status == DEAD_LETTER:
        order_metrics.count_dead_letter()
    return outcome


def _session_refused(order_id: str, account_id: str, error: str, hold_when_dead: bool) -> Outcome:
    """After the broker refused the account's access token (its session now marked expired): the order is
    held for the next login (or rejected, for a batch leg). When the token was an old one a newer login
    has replaced, the order goes again at once."""
    if is_live(account_id):  # a newer token is stored: this process's client was stale
        hold(order_id, from_submitting=True, held=False)
        return Outcome("defer", countdown=0.05, status=QUEUED)
    if not hold_when_dead:
        rejected = _reject(order_id, error, source="session_expired")
        return Outcome("done", status=rejected.status if rejected else REJECTED, error=error)
    status = hold(order_id, from_submitting=True)
    return Outcome("done", status=status, error=HELD)


def submit_order(order_id: str, max_attempts: int | None = None, account_id: str | None = None,
                 max_rate_wait_s: float = SLOT_WAIT_INLINE_S, hold_when_session_dead: bool = True) -> Outcome:
    """One attempt of the exactly-once placement of `order_id` (see the module docstring).

    While the account's Kite session is dead the order is held (app.kite_session.held_orders): left
    QUEUED and unsent until a login, never retried into the dead-letter queue. A batch leg and a rollback
    reversal pass `hold_when_session_dead=False`: a batch must not wait for a person, so its leg is
    rejected and the batch rolls back; a reversal reported failed must not fill later. (`account_id` is
    read from the order, which is loaded anyway for its expiry; the argument is kept for the callers.)"""
    settings = get_settings()
    max_attempts = max_attempts or settings.order_max_attempts
    lease_s = submission_lease_s(settings)

    halted = refuse_if_halted(order_id)  # a kill switch halted the account: only its square-offs go out
    if halted is not None:
        return halted

    waiting = _waiting_order(order_id)
    if isinstance(waiting, Outcome):
        return waiting
    waiting, limit_key = waiting
    account_id = waiting.account_id

    # Never placed late: past its expiry an order is EXPIRED — at once when no attempt can have placed
    # it, else once the claim's tag lookup (below) has not found it at the broker.
    too_late = admission.lapsed_error(waiting) if admission.too_late_to_send(waiting, utcnow()) else None
    if too_late is not None:
        expired = _expire_unsent(order_id, too_late)
        if expired is not None:
            return expired

    if hold_when_session_dead and not is_live(account_id):
        status = hold(order_id)
        return Outcome("done", status=status, error=HELD if status == QUEUED else None)

    slot_at = None
    if too_late is None:
        turn = _turn(waiting, limit_key, max_rate_wait_s)
        if turn.defer is not None:
            return turn.defer
        too_late, slot_at = turn.too_late, turn.slot_at
        if too_late is not None:
            expired = _expire_unsent(order_id, too_late)
            if expired is not None:
                return expired

    order, outcome = _claim(order_id, lease_s, slot_at)
    if order is None:
        return outcome
    attempt = order.attempts
    # The SUBMITTING update is published once the broker call is over: the order
    # reaches the broker first, and subscribers still get SUBMITTING before what follows.
    published = []

    def publish_claim():
        if not published:
            published.append(order_changed(order))

    # An earlier attempt (failed, timed out, or cut off by a crash) may have placed it.
    may_exist = attempt > 1 or order.error is not None
    if too_late is None and admission.too_late_to_send(order, utcnow()):  # woke too late for its slot
        too_late = admission.lapsed_error(order)
    if too_late is not None and not may_exist:
        publish_claim()
        return _expire_claimed(order_id, too_late, looked_up=False)

    breaker = order_circuit_breaker()
    permission = breaker.allow(account_id)
    if not permission.allowed:
        publish_claim()
        countdown = max(backoff_s(attempt, settings), permission.retry_after_s)
        return _fail_transient(order_id, "circuit breaker open: broker calls for this account are paused",
                               max_attempts, countdown)

    kite = None
    try:
        kite = broker_client(account_id)
        if may_exist:
            found = broker_orders_by_tag(kite.orders()).get(order.tag)
            if found is not None:
                publish_claim()
                breaker.record_success(account_id)
                adopted = _adopt(order_id, found)
                log.info("order adopted from the broker by tag", extra={"order_id": order_id, "tag": order.tag})
                return Outcome("done", status=adopted.status if adopted else None)
        if too_late is None:
            # Until its slot — or, come late for it, the next one free: the limiter's logs say when calls
            # really leave, which is how Kite counts them. None soon: back in the queue (no attempt spent).
            wait = order_rate_limiter().confirm(limit_key, order_id, max_wait_s=SLOT_WAIT_INLINE_S)
            if wait is None:
                publish_claim()
                return _unclaim(order_id, attempt)
            time.sleep(wait)
            if admission.too_late_to_send(order, utcnow()):  # checked right before sending
                too_late = admission.lapsed_error(order)
        if too_late is not None:  # not at the broker (looked up above when it may have been): never sent
            publish_claim()
            if may_exist:
                breaker.record_success(account_id)  # the broker answered the lookup
            return _expire_claimed(order_id, too_late, looked_up=may_exist)
        spend = order_budget().spend(limit_key)  # counted now, whatever the broker answers (Kite counts it too)
        if not spend.granted:
            publish_claim()
            error = refusal_at_send(limit_key, spend)
            rejected = _reject(order_id, error, source="order_budget")
            return Outcome("done", status=rejected.status if rejected else REJECTED, error=error)
        broker_order_id = kite.place_order(**placement_params(order))
        acked_at = utcnow()  # the broker's answer: what order_execution_duration_seconds ends at
    except Exception as exc:  # classified below; anything unknown is treated as transient
        publish_claim()
        error = describe(exc)
        if noticed(account_id, exc, "order", kite):  # the broker refused the token: never transient
            breaker.record_success(account_id)  # the broker answered: it is healthy
            return _session_refused(order_id, account_id, error, hold_when_session_dead)
        if is_final_rejection(exc):
            breaker.record_success(account_id)  # the broker answered: it is healthy
            rejected = _reject(order_id, error)
            return Outcome("done", status=rejected.status if rejected else REJECTED, error=error)
        breaker.record_failure(account_id)
        log.warning("order attempt failed", extra={"order_id": order_id, "attempt": attempt, "error": error})
        return _fail_transient(order_id, error, max_attempts, backoff_s(attempt, settings))
    publish_claim()
    acked = _record_ack(order_id, str(broker_order_id), acked_at)
    breaker.record_success(account_id)
    return Outcome("done", status=acked.status if acked else OPEN)
