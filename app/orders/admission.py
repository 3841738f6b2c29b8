"""Admission: how many unsent orders an account may have, and how long an order may wait to be sent.

Every order carries an expiry: `expires_at` = accepted_at + `expire_after_s` (the request's, else
ORDER_MAX_QUEUE_S, 30 s). An order not sent by then ends EXPIRED, never placed late: the worker
takes a rate-limit slot only if it comes SLOT_MARGIN_S before the expiry, and starts the broker call
only while SEND_MARGIN_S remain (app.orders.execution); the reconciler expires one whose task is gone.

Intake refuses (429 `order_backlog_full`, with Retry-After) a request whose placements would take
the unsent orders of the account's Zerodha user (its order limit key: Kite's rate is the user's)
past ORDER_BACKLOG_MAX — by default what the rate sends within ORDER_MAX_QUEUE_S
(ORDER_MAX_QUEUE_S × min(ORDER_RATE_PER_SECOND, ORDER_RATE_PER_MINUTE / 60)), so the last order
accepted can still go out before it expires — and a single order whose turn, behind the orders
already waiting, would come after its own expiry: Kite's minute limit lets ten a second go for 40 s
and then none until the minute is over, which a count alone does not see.

Placements of one Zerodha user go out in arrival order, except that batch legs, rollback reversals
and kill-switch square-offs go before the single orders still waiting (`rank_of`,
app.broker.rate_limit).
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from redis.exceptions import RedisError
from sqlalchemy import func, select

from app.broker.order_limit_keys import accounts_counted_under, describe_limit_key, order_limit_key_of
from app.broker.rate_limit import PRIORITY_RANK_OFFSET, order_rate_limiter
from app.core.config import Settings, get_settings
from app.core.db import new_session
from app.core.timestamps import iso
from app.models import Order
from app.orders.states import QUEUED

SLOT_MARGIN_S = 0.5  # the latest send slot an order takes is this long before its expiry ...
SEND_MARGIN_S = 0.2  # ... and its broker call starts while at least this much is left
# Orders that go before the single orders waiting for a slot: a batch is placed together, a rollback
# and a kill switch's square-off take risk off.
PRIORITY_ROLES = frozenset({"leg", "rollback", "square_off"})
# A batch's rollback reversal is sent however late: it takes a filled leg's risk off, and one that lapsed
# would leave the batch half-placed (ROLLBACK_FAILED). Its retries end in the dead-letter queue, as before.
# (A kill switch's square-offs do expire: a lapsed round is planned again from the broker's positions.)
UNEXPIRING_ROLES = frozenset({"rollback"})
UNEXPIRING_WITHIN = timedelta(days=1)


class OrderBacklogFull(Exception):
    """The request's placements would not go out before they expire (nothing stored)."""

    def __init__(self, limit_key: str, unsent: int, needed: int, backlog_max: int, retry_after_s: int,
                 turn_in_s: float | None = None) -> None:
        why = (f"its order rate has no slot for this order before its expiry (its turn would come in "
               f"{turn_in_s:.1f} s)" if turn_in_s is not None else
               f"it may have {backlog_max} (ORDER_BACKLOG_MAX: what its order rate sends before they expire) "
               f"and this request needs {needed} more")
        super().__init__(f"order backlog full: {describe_limit_key(limit_key)} has {unsent} orders waiting to "
                         f"be sent and {why}. Try again in {retry_after_s} s.")
        self.retry_after_s = retry_after_s
        self.details = {"unsent": unsent, "needed": needed, "backlog_max": backlog_max,
                        "retry_after_s": retry_after_s}
        if turn_in_s is not None:
            self.details["turn_in_s"] = round(turn_in_s, 3)


def placement_rate(settings: Settings | None = None) -> float:
    """Placements a second the rate limiter lets out, sustained."""
    settings = settings or get_settings()
    per_minute = settings.order_rate_per_minute / 60 if settings.order_rate_per_minute > 0 else math.inf
    return max(min(settings.order_rate_per_second, per_minute), 1e-9)


def backlog_max(settings: Settings | None = None) -> int:
    """ORDER_BACKLOG_MAX, or what the rate sends within ORDER_MAX_QUEUE_S."""
    settings = settings or get_settings()
    if settings.order_backlog_max is not None:
        return settings.order_backlog_max
    return max(1, math.floor(settings.order_max_queue_s * placement_rate(settings)))


def unsent_orders(limit_key: str) -> int:
    """Orders accepted and not sent yet (QUEUED: waiting for a slot, a retry or a login) of every account
    counted under the limit key; a sliced order counts as its slices."""
    accounts = accounts_counted_under(limit_key)
    with new_session() as session:
        return int(session.scalar(select(func.count()).select_from(Order).where(
            Order.account_id.in_(accounts), Order.status == QUEUED, Order.role != "parent")) or 0)


def require_backlog_room(account_id: str, placements: int, basket: list[dict], request: str,
                         counted: tuple[str, int] | None = None) -> None:
    """Raise OrderBacklogFull unless `placements` more orders fit in the account's backlog — and, for a
    single order (a batch's legs go before the waiting orders), unless its turn comes before it expires.
    `counted`: the account's limit key and unsent orders as the request's budget check just read them
    (app.orders.budget: the same count), which spares two database sessions per request."""
    settings = get_settings()
    if counted is not None:
        limit_key, unsent = counted
    else:
        limit_key = order_limit_key_of(account_id)
        unsent = unsent_orders(limit_key)
    allowed, rate = backlog_max(settings), placement_rate(settings)
    if unsent + placements > allowed:
        excess = unsent + placements - allowed
        raise OrderBacklogFull(limit_key, unsent, placements, allowed, max(1, math.ceil(excess / rate)))
    if request == "batch":
        return
    try:  # behind the slots reserved already, and the orders accepted whose task has not reserved one yet
        limiter = order_rate_limiter()
        turn_in = limiter.next_placement_in(limit_key)
        turn_in += max(0, unsent - limiter.waiting(limit_key) + placements - 1) / rate
    except RedisError:  # the worker, which needs Redis to send anything, still expires it in time
        return
    expire_after_s = min((leg.get("expire_after_s") or settings.order_max_queue_s) for leg in basket)
    latest = expire_after_s - SLOT_MARGIN_S
    if turn_in > latest:
        raise OrderBacklogFull(limit_key, unsent, placements, allowed, max(1, math.ceil(turn_in - latest)), turn_in)


def expiry_for(accepted_at: datetime, expire_after_s: int | None, settings: Settings | None = None) -> datetime:
    window = expire_after_s if expire_after_s is not None else (settings or get_settings()).order_max_queue_s
    return accepted_at + timedelta(seconds=window)


def expires(role: str | None) -> bool:
    return role not in UNEXPIRING_ROLES


def expiry_of(order: Order) -> datetime:
    """The order's expiry; an order stored before expiries existed lapses ORDER_MAX_QUEUE_S after it was
    accepted. A rollback reversal has none (its day's end, for the arithmetic)."""
    if not expires(order.role):
        return (order.accepted_at or order.created_at) + UNEXPIRING_WITHIN
    if order.expires_at is not None:
        return order.expires_at
    return expiry_for(order.accepted_at or order.created_at, order.expire_after_s)


def latest_slot(order: Order) -> float:
    """The latest send slot (epoch seconds) the rate limiter may give the order."""
    return expiry_of(order).timestamp() - SLOT_MARGIN_S


def too_late_to_send(order: Order, now: datetime) -> bool:
    """Checked right before the broker call: too close to (or past) its expiry to be placed in time."""
    return now >= expiry_of(order) - timedelta(seconds=SEND_MARGIN_S)


def rank_of(order: Order) -> float:
    """Its place among the placements of its Zerodha user: arrival order, priority roles first."""
    accepted = (order.accepted_at or order.created_at).timestamp()
    return accepted - PRIORITY_RANK_OFFSET if order.role in PRIORITY_ROLES else accepted


def lapsed_error(order: Order) -> str:
    return f"expired: not sent by its expiry ({iso(expiry_of(order))})"


def no_slot_error(order: Order, limit_key: str, slot_at: float) -> str:
    return (f"expired: not sent — the order rate of {describe_limit_key(limit_key)} had no send slot before its "
            f"expiry ({iso(expiry_of(order))}); the earliest was {iso(datetime.fromtimestamp(slot_at, timezone.utc))}")

