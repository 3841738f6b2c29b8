"""Modify and cancel of an OPEN order at the broker: one attempt, retried like placements."""
from __future__ import annotations

from kiteconnect import KiteConnect

from app.broker.circuit_breaker import order_circuit_breaker
from app.broker.client import broker_client
from app.broker.errors import describe, is_final_rejection
from app.broker.order_limit_keys import order_limit_key_of
from app.broker.rate_limit import order_rate_limiter
from app.core.config import get_settings
from app.core.db import new_session
from app.models import Order
from app.kite_session.refusals import noticed
from app.orders.attempts import MAX_INLINE_RATE_WAIT_S, Outcome, apply_locked, backoff_s
from app.orders.reconciliation import apply_to_order
from app.orders.states import OPEN, record_event


def _refresh_from_broker(kite: KiteConnect, order_id: str, broker_order_id: str, source: str) -> None:
    history = kite.order_history(broker_order_id)
    if history:
        apply_locked(order_id, lambda session, order: apply_to_order(session, order, history[-1], source))


def _note_failure(order_id: str, request: str, error: str) -> None:
    def apply(session, order):
        record_event(session, order, order.status, order.status, error=f"{request} failed: {error}",
                     detail={"request": request})
        return False
    apply_locked(order_id, apply)


def change_order(order_id: str, request: str, params: dict | None, attempt: int,
                 max_attempts: int | None = None) -> Outcome:
    """Send a modify (`params`) or cancel of an OPEN order; transient failures retry like placements."""
    settings = get_settings()
    max_attempts = max_attempts or settings.order_max_attempts
    with new_session() as session:
        order = session.get(Order, order_id)
        if order is None:
            return Outcome("done", error="no such order")
        if order.status != OPEN or not order.broker_order_id:
            _note_failure(order_id, request, f"order is {order.status}")
            return Outcome("done", status=order.status)
        account_id, broker_order_id, variety = order.account_id, order.broker_order_id, order.variety

    # Kite's 10 order requests a second are the Zerodha account's, whichever of its api keys sends them.
    reservation = order_rate_limiter().acquire(order_limit_key_of(account_id), placement=False,
                                               max_wait_s=MAX_INLINE_RATE_WAIT_S)
    if not reservation.granted:
        return Outcome("defer", countdown=reservation.wait_s)
    breaker = order_circuit_breaker()
    if not breaker.allow(account_id).allowed:
        error = "circuit breaker open"
    else:
        kite = None
        try:
            kite = broker_client(account_id)
            if request == "modify":
                kite.modify_order(variety, broker_order_id, **(params or {}))
            else:
                kite.cancel_order(variety, broker_order_id)
            breaker.record_success(account_id)
            _refresh_from_broker(kite, order_id, broker_order_id, source=request)
            return Outcome("done")
        except Exception as exc:
            error = describe(exc)
            if is_final_rejection(exc):
                noticed(account_id, exc, request, kite)  # a refused token: the session has expired
                breaker.record_success(account_id)
                _note_failure(order_id, request, error)
                return Outcome("done", error=error)
            breaker.record_failure(account_id)
    if attempt >= max_attempts:
        _note_failure(order_id, request, f"gave up after {attempt} attempts: {error}")
        return Outcome("done", error=error)
    return Outcome("retry", countdown=backoff_s(attempt, settings), error=error)
