"""The daily order budget of a Zerodha account, shared by every worker: one counter in Redis.

Kite allows 5,000 placements a day per Zerodha account (kite-rules §1.6), counted over the IST
calendar day, and it counts the requests it rejects or finds invalid too. So the service counts
every placement it sends — at send time, whatever the broker answers — under the account's
limit key (app.broker.order_limit_keys) and the IST day, and sends none beyond
ORDER_BUDGET_PER_DAY: `spend()` takes one placement from the day's budget, or refuses.
Modifications and cancellations do not count (nor does Kite count them per day).

The day is the IST calendar day on this host's clock (hosts keep NTP time; the budget resets at
midnight IST, give or take their skew). A day's counter expires an hour after the day.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from app.core.config import get_settings
from app.core.redis_client import get_redis

IST = timezone(timedelta(hours=5, minutes=30), "IST")
KEPT_AFTER_DAY_S = 3600

# KEYS[1]: the day's counter. ARGV: limit, ttl_s. Returns {granted (0/1), used after the call}.
_SPEND = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
  return {0, used}
end
used = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return {1, used}
"""


@dataclass(frozen=True)
class BudgetDay:
    """The IST calendar day a moment falls in, and when its budget resets."""

    day: date
    resets_at: datetime  # the next midnight IST (aware)

    def seconds_left(self, now: datetime) -> float:
        return (self.resets_at - now).total_seconds()

    def retry_after_s(self, now: datetime) -> int:
        """Whole seconds until the reset, rounded up, at least 1 (an HTTP Retry-After)."""
        return max(1, math.ceil(self.seconds_left(now)))


def budget_day(now: datetime | None = None) -> BudgetDay:
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("budget_day needs an aware datetime")
    day = now.astimezone(IST).date()
    return BudgetDay(day, datetime.combine(day + timedelta(days=1), time(0), IST))


@dataclass(frozen=True)
class Spend:
    granted: bool
    used: int  # placements counted today, this one included when granted
    limit: int
    resets_at: datetime


class OrderBudget:
    """Placements per limit key and IST day. `per_day` None: ORDER_BUDGET_PER_DAY of the settings
    at each call (tests change it for a while)."""

    def __init__(self, per_day: int | None = None, redis=None) -> None:
        self._per_day = per_day
        self._redis = redis
        self._script = None

    @property
    def per_day(self) -> int:
        return self._per_day if self._per_day is not None else get_settings().order_budget_per_day

    @property
    def redis(self):
        return self._redis or get_redis()

    @staticmethod
    def _counter(limit_key: str, day: date) -> str:
        return f"orderbudget:{limit_key}:{day.isoformat()}"

    def spend(self, limit_key: str, now: datetime | None = None) -> Spend:
        """Count one placement about to be sent, unless the day's budget is used up (then refused)."""
        now = now or datetime.now(timezone.utc)
        window = budget_day(now)
        if self._script is None:
            self._script = self.redis.register_script(_SPEND)
        ttl_s = math.ceil(window.seconds_left(now)) + KEPT_AFTER_DAY_S
        granted, used = self._script(keys=[self._counter(limit_key, window.day)], args=[self.per_day, ttl_s],
                                     client=self.redis)  # this process's client (prefork children get their own)
        return Spend(bool(int(granted)), int(used), self.per_day, window.resets_at)

    def used(self, limit_keys: list[str], now: datetime | None = None) -> dict[str, int]:
        """Placements counted today under each key."""
        if not limit_keys:
            return {}
        day = budget_day(now).day
        values = self.redis.mget([self._counter(key, day) for key in limit_keys])
        return {key: int(value or 0) for key, value in zip(limit_keys, values)}

    def reset(self, limit_key: str, now: datetime | None = None) -> None:
        self.redis.delete(self._counter(limit_key, budget_day(now).day))


_budget: OrderBudget | None = None


def order_budget() -> OrderBudget:
    global _budget
    if _budget is None:
        _budget = OrderBudget()
    return _budget
