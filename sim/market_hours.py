"""Kite's NSE session for orders: 09:15–15:30 IST, Monday–Friday (no holiday calendar).

Off by default: the sandbox trades around the clock. When on (`--market-hours`,
`POST /_sim/settings {"market_hours": true}`), read on the session clock (`sim.clock.now_ist()`):
- outside the session a `regular` order is refused synchronously with Kite's text, while an `amo`
  order is accepted as AMO REQ RECEIVED and waits here for the open;
- inside the session `amo` is refused (our choice: Kite's AMO window is outside the session);
- nothing is matched and no GTT fires while the market is closed.
At the first market step inside the session (`release_at_open`) the waiting AMO orders take
Kite's usual path, OPEN PENDING → OPEN (or TRIGGER PENDING), then matching.

Like the session clock, the state is the process's: one paper broker runs per process.
"""
from __future__ import annotations

from datetime import datetime, time

from . import clock
from .errors import input_error

SESSION_OPEN = time(9, 15)
SESSION_CLOSE = time(15, 30)
AMO_STATUS = "AMO REQ RECEIVED"
CLOSED_MESSAGE = "Markets are closed right now. Use GTT for placing long standing orders instead."
AMO_IN_SESSION_MESSAGE = ("After market orders (variety `amo`) are accepted only outside market hours "
                          "(09:15-15:30 IST, Monday-Friday). Use variety `regular` while the market is open.")

_enabled = False
_waiting: dict = {}   # order_id -> (account, order): AMO orders waiting for the open, in placement order


def start(on: bool) -> None:
    """A new broker: market hours as configured, no AMO order waiting."""
    set_enabled(on)
    _waiting.clear()


def set_enabled(on: bool) -> None:
    global _enabled
    _enabled = bool(on)


def enabled() -> bool:
    return _enabled


def in_session(moment: datetime) -> bool:
    """Whether an IST instant falls in the NSE session: weekdays, 09:15:00 up to (not including) 15:30:00."""
    return moment.weekday() < 5 and SESSION_OPEN <= moment.time() < SESSION_CLOSE


def is_open() -> bool:
    """Whether orders may trade now: always when market hours are off."""
    return not _enabled or in_session(clock.now_ist())


def check_variety(variety: str) -> None:
    """Refuse, before anything is created, a placement the session does not allow now."""
    if not _enabled:
        return
    if is_open():
        if variety == "amo":
            raise input_error(AMO_IN_SESSION_MESSAGE)
    elif variety != "amo":
        raise input_error(CLOSED_MESSAGE)


def hold_amo(broker, account, order) -> bool:
    """Park a validated AMO order until the open; False when it should go on to the exchange now."""
    if not _enabled or order.request.variety != "amo" or is_open():
        return False
    order.move(AMO_STATUS)
    _not_at_exchange(order)
    _waiting[order.order_id] = (account, order)
    broker._notify(account, order)
    return True


def _not_at_exchange(order) -> None:
    """An AMO order has not reached the exchange: no exchange order id or timestamps until the open."""
    blank = dict(exchange_order_id=None, exchange_timestamp=None, exchange_update_timestamp=None)
    order.fields.update(blank)
    order.history[-1].update(blank)


def release_at_open(broker) -> None:
    """Run after every market step: once the session is open, send the waiting AMO orders on."""
    if not _waiting or not is_open():
        return
    waiting = list(_waiting.values())
    _waiting.clear()
    for account, order in waiting:
        broker.send_to_exchange(account, order)   # Kite's usual path, as after validation and the RMS check


def cancel_waiting(broker, account, order_id: str):
    """Cancel an AMO order still waiting for the open (→ CANCELLED); None if it is not one."""
    entry = _waiting.get(order_id)
    if entry is None or entry[0].api_key != account.api_key:
        return None
    del _waiting[order_id]
    order = entry[1]
    order.move("CANCEL PENDING")
    _not_at_exchange(order)
    order.move("CANCELLED", cancelled_quantity=order.fields["pending_quantity"], pending_quantity=0)
    _not_at_exchange(order)
    broker._notify(account, order)
    return order


def waiting_count() -> int:
    return len(_waiting)
