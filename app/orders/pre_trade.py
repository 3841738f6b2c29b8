"""The checks before an order or a batch is stored, in this order: the account not halted (app.risk.halt),
a live Kite session, the day's order budget, room in the backlog of unsent orders (app.orders.admission),
the account's risk limits (app.risk.limits, a batch as a whole), then (if asked) the margin.

Shared by single orders (app.orders.service) and batches (app.batches.service). A request whose
Idempotency-Key already placed something gets that back instead of being refused: it was checked
when it was first placed.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from app.broker.margin_check import check_basket_margin
from app.kite_session.state import SessionNotLive, require_live_session
from app.orders.admission import OrderBacklogFull, require_backlog_room
from app.orders.budget import OrderBudgetExhausted, require_room
from app.risk.halt import AccountHalted, require_not_halted
from app.risk.limits import RiskCheckUnavailable, RiskLimitBreached, check_order_limits

Placed = TypeVar("Placed")

# What the checks refuse with; the API maps each (app.web.errors).
REFUSALS = (AccountHalted, SessionNotLive, OrderBudgetExhausted, OrderBacklogFull, RiskLimitBreached,
            RiskCheckUnavailable)


def check_before_storing(account_id: str, placements: int, basket: list[dict], request: str,
                         margin_check: bool, earlier: Callable[[], Placed | None]) -> Placed | None:
    """Raise one of REFUSALS or the margin check's refusals, or return what `earlier()` finds already
    placed under the request's key (the caller gives it back); None: go on and store it."""
    budget = {}  # the budget check's reading: its limit key and queued orders are the backlog's count too

    def backlog_counted() -> tuple[str, int] | None:
        status = budget.get("status")
        return (status.limit_key, status.queued) if status is not None else None

    checks = (
        lambda: require_not_halted(account_id),  # a kill switch halted it: nothing new until it resumes
        lambda: require_live_session(account_id),
        lambda: budget.update(status=require_room(account_id, placements)),
        # past what the rate can send before the orders expire: 429, try again shortly
        lambda: require_backlog_room(account_id, placements, basket, request, backlog_counted()),
        lambda: check_order_limits(account_id, basket, request),
    )
    for check in checks:
        try:
            check()
        except REFUSALS:
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
