"""A circuit breaker per account around broker calls, its state in Redis so every worker agrees.

Closed: calls go through; N consecutive transient failures open it. Open: calls
are refused until a cool-down has passed; then it is half-open and exactly one
caller gets to probe. The probe's success closes it, its failure opens it again.
Broker rejections (bad input) are answers, not failures: they do not count.

State values (also the `circuit_breaker_state` gauge): 0 closed, 1 half-open, 2 open.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.core.config import get_settings
from app.core.redis_client import get_redis

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half_open", OPEN: "open"}

KEY_PREFIX = "circuit:orders:"

# KEYS[1] hash {state, failures, opened_at}; ARGV: cooldown_s, probe_ttl_s.
# Returns {allowed, state, retry_after_s as string}.
_ALLOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = tonumber(redis.call('HGET', KEYS[1], 'state') or '0')
if state == 0 then return {1, 0, '0'} end
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
local cooldown = tonumber(ARGV[1])
if state == 2 then
  if now - opened < cooldown then return {0, 2, tostring(cooldown - (now - opened))} end
  redis.call('HSET', KEYS[1], 'state', 1, 'probe_until', now + tonumber(ARGV[2]))
  return {1, 1, '0'}
end
-- half-open: one probe at a time; a probe that never reported back expires
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now >= probe_until then
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[2]))
  return {1, 1, '0'}
end
return {0, 1, tostring(probe_until - now)}
"""

# KEYS[1]; ARGV: threshold. Returns the new state.
_FAILURE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local state = tonumber(redis.call('HGET', KEYS[1], 'state') or '0')
if state == 1 or failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'state', 2, 'opened_at', now)
  return 2
end
return state
"""


@dataclass(frozen=True)
class Permission:
    allowed: bool
    state: int
    retry_after_s: float


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown_s: float, probe_ttl_s: float = 15.0, redis=None) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.probe_ttl_s = probe_ttl_s  # longer than one broker call with its timeout
        self._redis = redis
        self._allow = self._failure = None

    @property
    def redis(self):
        return self._redis or get_redis()

    def allow(self, account_id: str) -> Permission:
        if self._allow is None:
            self._allow = self.redis.register_script(_ALLOW)
        allowed, state, retry_after = self._allow(keys=[KEY_PREFIX + account_id],
                                                  args=[self.cooldown_s, self.probe_ttl_s], client=self.redis)
        return Permission(bool(int(allowed)), int(state), float(retry_after))

    def record_success(self, account_id: str) -> None:
        key = KEY_PREFIX + account_id
        # Only write when something changes: the hot path is a closed breaker with no failures.
        if self.redis.exists(key):
            self.redis.delete(key)

    def record_failure(self, account_id: str) -> int:
        if self._failure is None:
            self._failure = self.redis.register_script(_FAILURE)
        return int(self._failure(keys=[KEY_PREFIX + account_id], args=[self.threshold], client=self.redis))

    def state(self, account_id: str) -> int:
        return int(self.redis.hget(KEY_PREFIX + account_id, "state") or CLOSED)

    def states(self) -> dict[str, int]:
        """Every account with a breaker that is not plainly closed (for the gauge)."""
        redis = self.redis
        out = {}
        for key in redis.scan_iter(KEY_PREFIX + "*", count=200):
            name = key.decode() if isinstance(key, bytes) else key
            out[name[len(KEY_PREFIX):]] = int(redis.hget(key, "state") or CLOSED)
        return out

    def reset(self, account_id: str) -> None:
        self.redis.delete(KEY_PREFIX + account_id)


_breaker: CircuitBreaker | None = None


def order_circuit_breaker() -> CircuitBreaker:
    global _breaker
    if _breaker is None:
        settings = get_settings()
        _breaker = CircuitBreaker(settings.circuit_breaker_threshold, settings.circuit_breaker_cooldown_s)
    return _breaker
