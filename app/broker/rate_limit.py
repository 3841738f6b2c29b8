"""Order rate limits shared by every worker process: one Lua script in Redis.

Kite counts order calls in fixed calendar windows (10 per second, N placements
per minute per Zerodha account — its api keys share them, so callers pass the
account's limit key, app.broker.order_limit_keys), aligned to its clock, not ours. A classic token bucket
with capacity C and rate r can let C + r·T calls into one window of length T,
which is a 429 at the broker. A rolling log cannot: at most N calls in *any*
window of length W ≥ Kite's also means at most N in each of Kite's fixed ones,
whatever their alignment. So both limits are rolling logs of reserved send
times (sorted sets):

- at most `per_second` calls (placements, modifies, cancels) in any
  SECOND_WINDOW_S — a little over a second, so network jitter between our
  clock and the broker's cannot squeeze an eleventh call into one of its
  seconds — which lets a 4-leg batch go out at once, unlike spacing every call;
- at most `per_minute` placements in any MINUTE_WINDOW_S.

A caller *reserves* a send time: the script answers how long to wait before
sending. Callers are served in the order they ask, and none of them polls. A
reservation further away than `max_wait_s` is not taken (the caller re-schedules
its task for later instead of holding a worker process).

Kite counts the endpoints that are neither orders, quotes nor history (margins among
them) against a limit of their own, 10 per second per api key: `other_calls_rate_limiter()`
keeps that log, under its own keys, with the same script.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from app.core.config import get_settings
from app.core.redis_client import get_redis

SECOND_WINDOW_S = 1.025  # 25 ms of slack per second (scheduling and network jitter) against Kite's windows
MINUTE_WINDOW_S = 60.5   # half a second of slack against a fixed minute window

# KEYS[1]: calls log, KEYS[2]: placements log (sorted sets of send times).
# ARGV: per_second, second_window_s, per_minute, minute_window_s, max_wait_s, placement (0/1), member id.
# Returns {granted (0/1), wait_s, slot} as strings.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local per_second = tonumber(ARGV[1])
local second_window = tonumber(ARGV[2])
local per_minute = tonumber(ARGV[3])
local minute_window = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local placement = ARGV[6] == '1'

-- The earliest send time at or after `slot` that keeps at most `limit` entries
-- of log `key` in any `window` (slots only grow, so the log is in send order).
local function earliest(key, limit, window, slot)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local nth = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local free_at = tonumber(nth[2]) + window
    if free_at > slot then slot = free_at end
  end
  return slot
end

local slot = now
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) > slot then slot = tonumber(last[2]) end  -- first come, first served
slot = earliest(KEYS[1], per_second, second_window, slot)
if placement and per_minute > 0 then
  slot = earliest(KEYS[2], per_minute, minute_window, slot)
end

local wait = slot - now
if wait > max_wait then
  return {0, tostring(wait), tostring(slot)}
end
redis.call('ZADD', KEYS[1], slot, ARGV[7])
redis.call('PEXPIRE', KEYS[1], math.ceil((slot - now + second_window) * 1000) + 1000)
if placement and per_minute > 0 then
  redis.call('ZADD', KEYS[2], slot, ARGV[7])
  redis.call('PEXPIRE', KEYS[2], math.ceil((slot - now + minute_window) * 1000) + 1000)
end
return {1, tostring(wait), tostring(slot)}
"""


@dataclass(frozen=True)
class Reservation:
    granted: bool
    wait_s: float  # granted: sleep this long, then send; refused: try again after this long
    slot_at: float = 0.0  # the send time on Redis's clock (epoch seconds)


class OrderRateLimiter:
    def __init__(self, per_second: float, per_minute: float, redis=None, kind: str = "orders") -> None:
        self.per_second = int(per_second)
        self.per_minute = int(per_minute)
        self.kind = kind  # the logs' namespace in Redis: each of Kite's limits counts its own calls
        self._redis = redis
        self._script = None

    @property
    def redis(self):
        return self._redis or get_redis()

    def _keys(self, account_id: str) -> list[str]:
        return [f"ratelimit:{self.kind}:{account_id}:calls", f"ratelimit:{self.kind}:{account_id}:placements"]

    def reserve(self, account_id: str, placement: bool = True, max_wait_s: float = 2.0) -> Reservation:
        """Reserve a send slot for one order call (placement, modify or cancel)."""
        if self._script is None:
            self._script = self.redis.register_script(_RESERVE)
        granted, wait, slot = self._script(
            keys=self._keys(account_id),
            args=[self.per_second, SECOND_WINDOW_S, self.per_minute, MINUTE_WINDOW_S, max_wait_s,
                  1 if placement else 0, uuid.uuid4().hex],
            client=self.redis)  # this process's client (prefork children get their own)
        return Reservation(bool(int(granted)), max(0.0, float(wait)), float(slot))

    def acquire(self, account_id: str, placement: bool = True, max_wait_s: float = 2.0) -> Reservation:
        """Reserve and sleep until the slot; a refused reservation is returned at once."""
        reservation = self.reserve(account_id, placement, max_wait_s)
        if reservation.granted and reservation.wait_s > 0:
            time.sleep(reservation.wait_s)
        return reservation

    def reset(self, account_id: str) -> None:
        self.redis.delete(*self._keys(account_id))


_limiter: OrderRateLimiter | None = None


def order_rate_limiter() -> OrderRateLimiter:
    global _limiter
    if _limiter is None:
        settings = get_settings()
        _limiter = OrderRateLimiter(settings.order_rate_per_second, settings.order_rate_per_minute)
    return _limiter


OTHER_CALLS_PER_SECOND = 10  # Kite's limit on the "other endpoints" (margins, positions, ...) per api key
_other_limiter: OrderRateLimiter | None = None


def other_calls_rate_limiter() -> OrderRateLimiter:
    """Send slots for an account's non-order calls (reserve with placement=False: no minute limit)."""
    global _other_limiter
    if _other_limiter is None:
        _other_limiter = OrderRateLimiter(OTHER_CALLS_PER_SECOND, 0, kind="other")
    return _other_limiter
