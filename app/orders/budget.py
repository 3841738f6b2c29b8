"""The daily order budget as clients meet it: room for new orders at intake, and what is left.

Placements are counted when they are sent (app.broker.order_budget), under the account's Zerodha
user (app.broker.order_limit_keys). An order is accepted only if it fits beside what was sent
today and what was accepted but is not sent yet — QUEUED orders of every account of the same
Zerodha user, retries included, since each will be sent:

    used + queued + new placements ≤ ORDER_BUDGET_PER_DAY

so an accepted order is one the budget will let out. (Requests racing each other can still
overrun it by a few: the worker refuses, at send time, a placement the day's budget has no room
for — app.orders.execution.)
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

from redis.exceptions import RedisError
from sqlalchemy import func, select

from app.broker.order_budget import Spend, budget_day, order_budget
from app.broker.order_limit_keys import describe_limit_key, order_limit_key
from app.core.db import new_session
from app.core.timestamps import iso
from app.models import Account, Order
from app.orders.states import QUEUED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetStatus:
    limit_key: str
    used: int      # placements sent today (IST)
    queued: int    # accepted, not sent yet
    limit: int
    resets_at: datetime

    @property
    def remaining(self) -> int:
        """Placements new orders may still use today."""
        return max(0, self.limit - self.used - self.queued)

    def view(self) -> dict:
        return {"used": self.used, "queued": self.queued, "remaining": self.remaining, "limit": self.limit,
                "resets_at": iso(self.resets_at)}


class OrderBudgetExhausted(Exception):
    """The request's placements do not fit in what is left of the day's budget (nothing was stored)."""

    def __init__(self, status: BudgetStatus, needed: int, retry_after_s: int) -> None:
        waiting = f" and {status.queued} waiting to be sent" if status.queued else ""
        super().__init__(
            f"daily order budget exhausted: {describe_limit_key(status.limit_key)} may send {status.limit} "
            f"orders a day (ORDER_BUDGET_PER_DAY, Kite's limit per Zerodha account); {status.used} sent "
            f"today{waiting} leave room for {status.remaining}, and this request needs {needed}. "
            f"The budget resets at midnight IST ({iso(status.resets_at)}).")
        self.status, self.needed, self.retry_after_s = status, needed, retry_after_s
        self.details = {**status.view(), "needed": needed}


def refusal_at_send(limit_key: str, spend: Spend) -> str:
    """The error of a queued order the day's budget had no room for when its turn came (REJECTED,
    not sent: one sent beyond the budget would be Kite's "Maximum allowed order requests exceeded")."""
    return (f"order budget exhausted: not sent, {describe_limit_key(limit_key)} has sent {spend.used} of its "
            f"{spend.limit} orders a day (ORDER_BUDGET_PER_DAY); the budget resets at midnight IST "
            f"({iso(spend.resets_at)}) — place the order again then if it is still wanted")


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(timezone.utc)


def budget_statuses(account_ids: list[str] | None = None, now: datetime | None = None,
                    with_queued: bool = True) -> dict[str, BudgetStatus]:
    """Each account's budget (every account when `account_ids` is None); an account shares its
    Zerodha user's. Two queries and one Redis round trip, whatever the number of accounts."""
    now = _now(now)
    with new_session() as session:
        keys = {account_id: order_limit_key(account_id, user)
                for account_id, user in session.execute(select(Account.id, Account.broker_user_id))}
        wanted = [a for a in (keys if account_ids is None else account_ids) if a in keys]
        wanted_keys = {keys[a] for a in wanted}
        sharing = [a for a, key in keys.items() if key in wanted_keys]  # their Zerodha users' accounts
        queued_by_account = dict(session.execute(
            select(Order.account_id, func.count())
            .where(Order.status == QUEUED, Order.role != "parent", Order.account_id.in_(sharing)).group_by(Order.account_id)
        ).tuples().all()) if with_queued and sharing else {}
    queued_by_key: Counter[str] = Counter()
    for account_id, count in queued_by_account.items():
        queued_by_key[keys[account_id]] += count
    used = order_budget().used(sorted(wanted_keys), now)
    limit, resets_at = order_budget().per_day, budget_day(now).resets_at
    return {a: BudgetStatus(keys[a], used[keys[a]], queued_by_key[keys[a]], limit, resets_at) for a in wanted}


def budget_views(account_ids: list[str]) -> dict[str, dict | None]:
    """What `GET /accounts` shows of each budget; None for every account when Redis cannot be read."""
    try:
        statuses = budget_statuses(account_ids)
    except RedisError:
        log.warning("order budgets unavailable (Redis)", exc_info=True)
        return {account_id: None for account_id in account_ids}
    return {account_id: statuses[account_id].view() if account_id in statuses else None
            for account_id in account_ids}


def require_room(account_id: str, placements: int, now: datetime | None = None) -> BudgetStatus | None:
    """Raise OrderBudgetExhausted unless `placements` more orders fit in today's budget; else the
    status read (its limit key and queued orders serve the backlog check too: app.orders.pre_trade).

    Without Redis the request goes through unchecked: the worker checks at send time anyway, and
    an outage must not refuse what the service would otherwise accept and queue."""
    now = _now(now)
    try:
        status = budget_statuses([account_id], now).get(account_id)
    except RedisError:
        log.warning("order budget not checked at intake (Redis)", exc_info=True, extra={"account_id": account_id})
        return None
    if status is not None and placements > status.remaining:  # (no such account: the caller's 404)
        raise OrderBudgetExhausted(status, placements, budget_day(now).retry_after_s(now))
    return status
