"""The checks before an order or a batch is stored: a live Kite session, the day's order budget, then (if
asked) the margin.

Shared by single orders (app.orders.service) and batches (app.batches.service). A request whose
Idempotency-Key already placed something gets that back instead of being refused: it was checked
when it was first placed.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from app.broker.margin_check import check_basket_margin
from app.kite_session.state import SessionNotLive, require_live_session
from app.orders.budget import OrderBudgetExhausted, require_room

Placed = TypeVar("Placed")


def check_before_storing(account_id: str, placements: int, basket: list[dict], request: str,
                         margin_check: bool, earlier: Callable[[], Placed | None]) -> Placed | None:
    """Raise SessionNotLive / OrderBudgetExhausted / the margin check's refusals, or return what `earlier()`
    finds already placed under the request's key (the caller gives it back); None: go on and store it."""
    try:
        require_live_session(account_id)
    except SessionNotLive:
        found = earlier()
        if found is None:
            raise
        return found
    try:
        require_room(account_id, placements)
    except OrderBudgetExhausted:
        found = earlier()
        if found is None:
            raise
        return found
    if margin_check:
        found = earlier()
        if found is not None:
            return found
        check_basket_margin(account_id, basket, request)
    return None
