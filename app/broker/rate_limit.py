"""Order rate limits shared by every worker process: Lua scripts in Redis.

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
sending, and none of them polls. A reservation further away than `max_wait_s`
(or, for an order, than its `deadline`) is not taken.

An order's placement reserves under its own id (`member`) with a `rank`, and may wait for
its slot in a queue instead of in a worker process (app.orders.execution defers its task
until then):

- placements are served in rank order: an order's rank is when it was accepted (arrival order),
  less PRIORITY_RANK_OFFSET for batch legs, rollback reversals and kill-switch square-offs, which
  so go before every single order still waiting. A reservation of a lower rank takes the earliest
  slot after the lower-ranked ones, and the waiting reservations ranked after it are scheduled
  again behind it — never earlier than they were promised (their tasks sleep until then), and
  dropped when that passes their deadline (their tasks then find no slot: the order expires). That
  costs one pass over the waiting reservations (about 10 ms for 400) per such reservation;
- a placement that waits behind others leaves a window's share (SECOND_WINDOW_S / per_second) after
  the one before it: the same rate as ten at once per window, but one call at a time, which a worker
  sends on time (a free window still takes its calls at once: a batch's legs go together);
- `take` hands the slot to its task when it is close (the reservation then no longer moves), and
  `confirm`, right before the call, moves the slot of a task that came late (a busy worker) to when the
  call really leaves, so late calls never bunch into one of Kite's seconds;
- modifications and cancellations (`placement=False`) go before the placements still waiting
  for their slot: a cancel (the kill switch's among them) waits at most for the calls already
  leaving, never behind a queue of placements up to a minute long.

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
PRIORITY_RANK_OFFSET = 1e10  # ranks are epoch seconds: this puts priority reservations before any other
CONFIRM_LATE_S = 0.02  # a call leaving this much after its slot is still counted at its slot (within the slack)

# KEYS: calls log, placements log (sorted sets: member → send time), queue (member → rank of the
# placements still waiting for their task to take the slot), deadlines (hash: member → latest send time).
# ARGV[1..4]: per_second, second_window_s, per_minute, minute_window_s; then the operation's own.
_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local calls, placements, queue, deadlines = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local per_second = tonumber(ARGV[1])
local second_window = tonumber(ARGV[2])
local per_minute = tonumber(ARGV[3])
local minute_window = tonumber(ARGV[4])
local EPS = 0.000002

-- Scores with microseconds (Lua's own number formatting keeps 14 digits: a tenth of a millisecond).
local function num(x) return string.format('%.6f', x) end

local function trim()
  redis.call('ZREMRANGEBYSCORE', calls, '-inf', num(now - second_window))
  local kept = second_window
  if per_minute > 0 and minute_window > kept then kept = minute_window end
  redis.call('ZREMRANGEBYSCORE', placements, '-inf', num(now - kept))
end

-- Would one more entry at `t` keep every window of `key` holding t at `limit` entries at most?
-- The fullest such windows start at t itself or at an entry in (t - window, t].
local function fits(key, limit, window, t)
  if redis.call('ZCOUNT', key, num(t), '(' .. num(t + window)) >= limit then return false end
  local starts = redis.call('ZRANGEBYSCORE', key, '(' .. num(t - window), num(t), 'WITHSCORES')
  for i = 2, #starts, 2 do
    local s = tonumber(starts[i])
    if redis.call('ZCOUNT', key, num(s), '(' .. num(s + window)) >= limit then return false end
  end
  return true
end

-- The earliest time from `t` where one more entry fits anywhere in the log (gaps included): a time
-- that does not fit starts to fit only when an entry leaves its windows, at that entry + window.
local function earliest_gap(key, limit, window, t)
  while not fits(key, limit, window, t) do
    local nxt = redis.call('ZRANGEBYSCORE', key, '(' .. num(t - window), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    t = tonumber(nxt[2]) + window + EPS
  end
  return t
end

-- Appending to a log whose entries are all at or before `t`: the limit-th entry from the end frees it.
local function after_window(key, limit, window, t)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local nth = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local free_at = tonumber(nth[2]) + window + EPS
    if free_at > t then t = free_at end
  end
  return t
end

-- A placement's send time from `t`: after every placement scheduled (first come, first served),
-- within the minute's placements and the second's calls (appended when no call is scheduled later).
-- An order's placement behind others still to leave is `spaced` a window's share after the last one:
-- the same rate, but one call at a time, which a worker can send on time (ten due at one instant
-- would leave late, one after the other).
local function placement_slot(t, spaced)
  local last = redis.call('ZRANGE', placements, -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) > t then t = tonumber(last[2]) end
  if spaced and per_second > 0 and last[2] and tonumber(last[2]) > now then
    local next_share = tonumber(last[2]) + second_window / per_second
    if next_share > t then t = next_share end
  end
  if per_minute > 0 then t = after_window(placements, per_minute, minute_window, t) end
  local last_call = redis.call('ZRANGE', calls, -1, -1, 'WITHSCORES')
  if not last_call[2] or tonumber(last_call[2]) <= t then
    return after_window(calls, per_second, second_window, t)
  end
  return earliest_gap(calls, per_second, second_window, t)
end

local function forget(member)
  redis.call('ZREM', queue, member)
  redis.call('HDEL', deadlines, member)
end

-- Reservations whose task never came for them (a worker lost): past their deadline, they are forgotten.
-- The oldest ranks are the first in the queue, so looking at its head is enough.
local function forget_lapsed()
  for _, member in ipairs(redis.call('ZRANGE', queue, 0, 9)) do
    if tonumber(redis.call('HGET', deadlines, member) or '0') < now then forget(member) end
  end
end

-- The waiting placements ranked in `ranks` (a ZRANGEBYSCORE min), taken out of the logs so that a
-- call of a higher rank can go first; those past their deadline are forgotten.
local function lift(ranks)
  local lifted = {}
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', queue, ranks, '+inf')) do
    local slot = redis.call('ZSCORE', placements, member)
    local deadline = tonumber(redis.call('HGET', deadlines, member) or '0')
    redis.call('ZREM', calls, member)
    redis.call('ZREM', placements, member)
    if slot and deadline >= now then
      table.insert(lifted, {member, tonumber(slot), deadline})
    else
      forget(member)
    end
  end
  return lifted
end

-- Back into the logs in rank order, each no earlier than promised; one that no longer makes its
-- deadline is forgotten (its task finds no reservation and expires the order).
local function put_back(lifted)
  for _, r in ipairs(lifted) do
    local slot = placement_slot(math.max(now, r[2]), true)
    if slot > r[3] then
      forget(r[1])
    else
      redis.call('ZADD', calls, num(slot), r[1])
      redis.call('ZADD', placements, num(slot), r[1])
    end
  end
end

local function keep_alive()
  local horizon = now
  for _, key in ipairs({calls, placements}) do
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    if last[2] and tonumber(last[2]) > horizon then horizon = tonumber(last[2]) end
  end
  local ms = math.ceil((horizon - now + math.max(second_window, minute_window)) * 1000) + 1000
  for _, key in ipairs({calls, placements, queue, deadlines}) do redis.call('PEXPIRE', key, ms) end
end
"""

# ARGV[5..10]: max_wait_s, placement (0/1), member, rank ('' for a reservation that does not wait in
# the queue), deadline (epoch seconds, with a rank), max_inline_s (closer than this: taken at once).
# Returns {granted (0/1), wait_s, slot, queued (0/1)}.
_RESERVE = _COMMON + """
local max_wait, placement, member, rank = tonumber(ARGV[5]), ARGV[6] == '1', ARGV[7], ARGV[8]
local queued_order = placement and rank ~= ''
trim()
forget_lapsed()
if queued_order then
  if redis.call('ZSCORE', queue, member) then  -- already waiting: that reservation stands
    local held = redis.call('ZSCORE', placements, member)
    if held then return {1, num(tonumber(held) - now), num(tonumber(held)), 1} end
    forget(member)
  end
  -- A slot this order reserved before (sent, or left unused by a task that died) still counts.
  for _, key in ipairs({calls, placements}) do
    local used = redis.call('ZSCORE', key, member)
    if used then
      redis.call('ZADD', key, used, member .. '@' .. used)
      redis.call('ZREM', key, member)
    end
  end
end

local lifted = {}
local slot
if placement then
  if queued_order then lifted = lift('(' .. rank) end
  slot = placement_slot(now, queued_order)
else
  slot = earliest_gap(calls, per_second, second_window, now)
  if slot > now + 0.001 and redis.call('ZCARD', queue) > 0 then
    lifted = lift('-inf')
    slot = earliest_gap(calls, per_second, second_window, now)
  end
end

local latest = now + max_wait
if queued_order and tonumber(ARGV[9]) < latest then latest = tonumber(ARGV[9]) end
if slot > latest then
  put_back(lifted)
  return {0, num(slot - now), num(slot), 0}
end
redis.call('ZADD', calls, num(slot), member)
if placement then redis.call('ZADD', placements, num(slot), member) end
local queued = 0
if queued_order and slot - now > tonumber(ARGV[10]) then
  redis.call('ZADD', queue, rank, member)
  redis.call('HSET', deadlines, member, ARGV[9])
  queued = 1
end
put_back(lifted)
keep_alive()
return {1, num(slot - now), num(slot), queued}
"""

# ARGV[5]: member, ARGV[6]: max_inline_s. Returns {state (1 take it now, 0 still waiting, -1 none), wait_s, slot}.
_TAKE = _COMMON + """
local member = ARGV[5]
if not redis.call('ZSCORE', queue, member) then return {-1, '0', '0'} end
local slot = redis.call('ZSCORE', placements, member)
if not slot then
  forget(member)
  return {-1, '0', '0'}
end
slot = tonumber(slot)
if slot - now <= tonumber(ARGV[6]) then
  forget(member)
  return {1, num(slot - now), num(slot)}
end
return {0, num(slot - now), num(slot)}
"""

# ARGV[5]: member, ARGV[6]: late_s, ARGV[7]: max_wait_s. Right before the call: an entry more than late_s
# behind now (its task came late) moves to the earliest time from now that keeps every window, so the
# logs say when calls really leave — or, when that is more than max_wait_s away, leaves the logs.
# Returns {wait_s, slot}, or {-1, slot} when it left.
_CONFIRM = _COMMON + """
local member, late, max_wait = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local slot = redis.call('ZSCORE', calls, member)
if slot and now - tonumber(slot) <= late then
  return {num(math.max(0, tonumber(slot) - now)), num(tonumber(slot))}
end
local placed = redis.call('ZSCORE', placements, member)
redis.call('ZREM', calls, member)
redis.call('ZREM', placements, member)
local t = now
while true do
  t = earliest_gap(calls, per_second, second_window, t)
  if not placed or per_minute <= 0 or fits(placements, per_minute, minute_window, t) then break end
  t = earliest_gap(placements, per_minute, minute_window, t)
end
if t - now > max_wait then return {-1, num(t)} end
redis.call('ZADD', calls, num(t), member)
if placed then redis.call('ZADD', placements, num(t), member) end
keep_alive()
return {num(t - now), num(t)}
"""


# No ARGV of its own. Returns {wait_s, slot}: when an order's placement reserved now would go (nothing reserved).
_NEXT_PLACEMENT = _COMMON + """
trim()
local slot = placement_slot(now, true)
return {num(slot - now), num(slot)}
"""


@dataclass(frozen=True)
class Reservation:
    granted: bool
    wait_s: float  # granted: sleep this long, then send; refused: the earliest slot is this far away
    slot_at: float = 0.0  # the send time on Redis's clock (epoch seconds)
    queued: bool = False  # granted and waiting in the queue: `take` it when it is close


@dataclass(frozen=True)
class HeldSlot:
    """What `take` finds of an order's reservation."""

    state: str  # TAKEN (send at slot_at; it no longer moves) | WAITING (still further away) | NONE
    wait_s: float = 0.0
    slot_at: float = 0.0


TAKEN, WAITING, NONE = "taken", "waiting", "none"


class OrderRateLimiter:
    def __init__(self, per_second: float, per_minute: float, redis=None, kind: str = "orders") -> None:
        self.per_second = int(per_second)
        self.per_minute = int(per_minute)
        self.kind = kind  # the logs' namespace in Redis: each of Kite's limits counts its own calls
        self._redis = redis
        self._scripts: dict[str, object] = {}

    @property
    def redis(self):
        return self._redis or get_redis()

    def _keys(self, account_id: str) -> list[str]:
        prefix = f"ratelimit:{self.kind}:{account_id}"
        return [f"{prefix}:calls", f"{prefix}:placements", f"{prefix}:queue", f"{prefix}:deadlines"]

    def _run(self, name: str, source: str, account_id: str, *args):
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.redis.register_script(source)
        return script(keys=self._keys(account_id),
                      args=[self.per_second, SECOND_WINDOW_S, self.per_minute, MINUTE_WINDOW_S, *args],
                      client=self.redis)  # this process's client (prefork children get their own)

    def reserve(self, account_id: str, placement: bool = True, max_wait_s: float = 2.0,
                member: str | None = None, rank: float | None = None, deadline: float | None = None,
                max_inline_s: float = 0.0) -> Reservation:
        """Reserve a send slot for one order call (placement, modify or cancel).

        An order's placement passes its id as `member`, its `rank` and its `deadline` (epoch seconds):
        a slot further than `max_inline_s` away then waits in the queue for `take`; refused when the
        earliest slot is past the deadline."""
        ranked = placement and member is not None and rank is not None
        latest = deadline if deadline is not None else time.time() + max_wait_s
        granted, wait, slot, queued = self._run(
            "reserve", _RESERVE, account_id, max_wait_s, 1 if placement else 0, member or uuid.uuid4().hex,
            repr(float(rank)) if ranked else "", repr(float(latest)), max_inline_s)
        return Reservation(bool(int(granted)), max(0.0, float(wait)), float(slot), bool(int(queued)))

    def take(self, account_id: str, member: str, max_inline_s: float) -> HeldSlot:
        """The order's reservation, handed to its task when it is at most `max_inline_s` away."""
        state, wait, slot = self._run("take", _TAKE, account_id, member, max_inline_s)
        state = {1: TAKEN, 0: WAITING}.get(int(state), NONE)
        return HeldSlot(state, max(0.0, float(wait)), float(slot))

    def confirm(self, account_id: str, member: str, max_wait_s: float,
                late_s: float = CONFIRM_LATE_S) -> float | None:
        """Right before the call of a slot taken: how long to wait still. A task that came late for its slot
        has it moved to the earliest time from now that keeps every window (the logs must say when calls
        really leave: Kite counts them when they arrive); None when that is more than `max_wait_s` away
        (the slot is given up: reserve again)."""
        wait, _ = self._run("confirm", _CONFIRM, account_id, member, late_s, max_wait_s)
        return None if float(wait) < 0 else float(wait)

    def next_placement_in(self, account_id: str) -> float:
        """Seconds until an order's placement reserved now would go, behind those waiting (a look only)."""
        wait, _ = self._run("next_placement", _NEXT_PLACEMENT, account_id)
        return max(0.0, float(wait))

    def waiting(self, account_id: str) -> int:
        """Placements reserved and waiting for their slot."""
        return int(self.redis.zcard(self._keys(account_id)[2]))

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
