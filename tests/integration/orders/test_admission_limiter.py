"""The order rate limiter's queue against the real Redis (app/broker/rate_limit.py): orders reserve their
send slot once, in arrival order, one window's share apart once they wait; batch legs go before the
single orders still waiting, which are scheduled again behind them, never earlier than promised; cancels
are not starved by a queue of placements; no slot past an order's deadline; a task late for its slot
sends at the next free one; and every window keeps Kite's limits throughout."""
from __future__ import annotations

import time
import uuid

import pytest

from app.broker.rate_limit import (MINUTE_WINDOW_S, NONE, PRIORITY_RANK_OFFSET, SECOND_WINDOW_S, TAKEN, WAITING,
                                   OrderRateLimiter)

PER_SECOND = 2


@pytest.fixture()
def limiter(test_env):
    made = OrderRateLimiter(per_second=PER_SECOND, per_minute=1000)
    made.key = f"adm-{uuid.uuid4().hex[:8]}"
    yield made
    made.reset(made.key)


def queue(limiter, count: int, start: float, deadline_in: float = 50.0, prefix: str = "o") -> dict[str, float]:
    """`count` single orders accepted one after the other: their slots by member."""
    slots = {}
    for i in range(count):
        reservation = limiter.reserve(limiter.key, max_wait_s=60, member=f"{prefix}{i}", rank=start + i * 0.001,
                                      deadline=time.time() + deadline_in)
        assert reservation.granted, (i, reservation)
        slots[f"{prefix}{i}"] = reservation.slot_at
    return slots


def slot_of(limiter, member: str) -> float | None:
    return limiter.redis.zscore(limiter._keys(limiter.key)[1], member)


def assert_within_limits(limiter):
    calls = sorted(score for _, score in limiter.redis.zrange(limiter._keys(limiter.key)[0], 0, -1, withscores=True))
    placements = sorted(s for _, s in limiter.redis.zrange(limiter._keys(limiter.key)[1], 0, -1, withscores=True))
    assert max(sum(1 for s in calls if t <= s < t + SECOND_WINDOW_S - 1e-4) for t in calls) <= PER_SECOND
    assert max(sum(1 for s in placements if t <= s < t + MINUTE_WINDOW_S - 1e-4) for t in placements) <= 1000


def test_orders_are_served_in_arrival_order_and_keep_their_slot(limiter):
    now = time.time()
    slots = queue(limiter, 6, now)
    ordered = [slots[f"o{i}"] for i in range(6)]
    assert ordered == sorted(ordered)
    assert ordered[1] - ordered[0] < 0.01  # a free window's two go at once
    share = SECOND_WINDOW_S / PER_SECOND  # those waiting go one at a time, at the same rate
    gaps = [later - earlier for earlier, later in zip(ordered[2:], ordered[3:])]
    assert ordered[2] - ordered[0] == pytest.approx(SECOND_WINDOW_S, abs=0.01)
    assert gaps == pytest.approx([share] * 3, abs=0.01)
    assert_within_limits(limiter)
    # Asking again (a redelivered task) gives the same slot; nothing new is reserved.
    again = limiter.reserve(limiter.key, max_wait_s=60, member="o5", rank=now + 0.005, deadline=now + 50)
    assert again.granted and again.slot_at == pytest.approx(slots["o5"])
    assert limiter.waiting(limiter.key) == 4  # the first two were due at once: handed over already
    # An order accepted before the others but reserving later (its task ran late) goes before them.
    early = limiter.reserve(limiter.key, max_wait_s=60, member="early", rank=now - 1, deadline=now + 50)
    assert early.slot_at == pytest.approx(slots["o0"])
    moved = [slot_of(limiter, f"o{i}") for i in range(6)]
    assert all(after >= before - 1e-6 for before, after in zip(ordered, moved))  # never earlier than promised
    assert moved == sorted(moved) and moved[-1] > ordered[-1]
    assert_within_limits(limiter)


def test_take_hands_the_slot_over_only_when_it_is_close(limiter):
    slots = queue(limiter, 6, time.time())  # o0, o1 now; o2, o3 a window later; o4, o5 two
    near, far = limiter.take(limiter.key, "o2", 1.5), limiter.take(limiter.key, "o4", 1.5)
    assert near.state == TAKEN and near.slot_at == pytest.approx(slots["o2"]) and 0.9 < near.wait_s <= 1.5
    assert far.state == WAITING and far.wait_s > 1.5 and far.slot_at == pytest.approx(slots["o4"])
    # A taken slot no longer waits and is not moved by a leg; the log keeps it counted.
    assert limiter.take(limiter.key, "o2", 1.5).state == NONE
    limiter.reserve(limiter.key, max_wait_s=60, member="leg", rank=time.time() - PRIORITY_RANK_OFFSET,
                    deadline=time.time() + 50)
    assert slot_of(limiter, "o2") == pytest.approx(slots["o2"])
    assert slot_of(limiter, "o3") > slots["o3"] + 0.1  # still waiting: moved behind the leg
    assert limiter.take(limiter.key, "never-reserved", 1.5).state == NONE
    assert_within_limits(limiter)


def test_batch_legs_go_before_the_single_orders_still_waiting(limiter):
    now = time.time()
    slots = queue(limiter, 6, now)
    waiting = [m for m in slots if limiter.take(limiter.key, m, 0.0).state == WAITING]
    assert waiting == ["o2", "o3", "o4", "o5"]  # the first two went at once
    legs = [limiter.reserve(limiter.key, max_wait_s=60, member=f"leg{i}", rank=now + 5 - PRIORITY_RANK_OFFSET,
                            deadline=now + 50) for i in range(2)]
    # The legs take the first slots the waiting orders had; those move behind them, in their order.
    assert [leg.slot_at for leg in legs] == pytest.approx([slots["o2"], slots["o3"]], abs=1e-3)
    moved = [slot_of(limiter, m) for m in waiting]
    assert moved == sorted(moved) and moved[0] == pytest.approx(slots["o4"], abs=1e-3)
    # Their tasks read the new slot when they wake, and wait for it.
    assert limiter.take(limiter.key, "o2", 0.0).slot_at == pytest.approx(moved[0])
    assert_within_limits(limiter)


def test_cancels_are_not_starved_by_a_queue_of_placements(limiter):
    now = time.time()
    queue(limiter, 20, now)  # ten windows of placements ahead
    # Two a window: behind the two placements leaving now, not behind the ten windows of the queue.
    cancels = [limiter.reserve(limiter.key, placement=False, max_wait_s=3.0) for _ in range(3)]
    assert all(c.granted for c in cancels)
    assert [round(c.wait_s / SECOND_WINDOW_S) for c in cancels] == [1, 1, 2]
    assert_within_limits(limiter)
    # The placements they went before are still in arrival order.
    moved = [slot_of(limiter, f"o{i}") for i in range(20)]
    assert moved == sorted(moved)


def test_no_slot_past_an_orders_deadline(limiter):
    now = time.time()
    queue(limiter, 6, now)
    refused = limiter.reserve(limiter.key, max_wait_s=60, member="late", rank=now + 1, deadline=time.time() + 1.5)
    assert not refused.granted and refused.slot_at > time.time() + 1.5  # the earliest slot, for the error
    assert slot_of(limiter, "late") is None and limiter.waiting(limiter.key) == 4
    # A waiting order pushed past its deadline by a leg is dropped: its task finds no slot and expires it.
    x = limiter.reserve(limiter.key, max_wait_s=60, member="x", rank=now + 1.5, deadline=time.time() + 50)
    tight = limiter.reserve(limiter.key, max_wait_s=60, member="tight", rank=now + 2,
                            deadline=x.slot_at + SECOND_WINDOW_S / PER_SECOND + 0.05)
    assert tight.granted and tight.queued
    limiter.reserve(limiter.key, max_wait_s=60, member="leg", rank=now - PRIORITY_RANK_OFFSET,
                    deadline=time.time() + 50)
    assert limiter.take(limiter.key, "tight", 0.0).state == NONE and slot_of(limiter, "tight") is None
    assert_within_limits(limiter)


def test_a_task_late_for_its_slot_sends_at_the_next_free_one(limiter):
    now = time.time()
    slots = queue(limiter, 6, now)  # o2..o5 waiting, one a share apart
    assert limiter.take(limiter.key, "o0", 1.0).state == NONE  # taken at once when reserved
    # On time (or within the slack), a call is counted at its slot.
    assert limiter.confirm(limiter.key, "o0", max_wait_s=0.25) == 0.0
    assert slot_of(limiter, "o0") == pytest.approx(slots["o0"])
    # o2's task comes 0.3 s late: the windows are full behind it, so its slot is given up (reserve again).
    time.sleep(max(0.0, slots["o2"] + 0.3 - time.time()))
    assert limiter.take(limiter.key, "o2", 1.0).state == TAKEN
    assert limiter.confirm(limiter.key, "o2", max_wait_s=0.25) is None
    assert slot_of(limiter, "o2") is None
    again = limiter.reserve(limiter.key, max_wait_s=60, member="o2", rank=now + 0.002, deadline=time.time() + 50)
    # Again in the queue, first among those waiting (which move behind it).
    assert again.granted and again.slot_at < min(slot_of(limiter, f"o{i}") for i in (3, 4, 5))
    assert slot_of(limiter, "o3") >= slots["o3"] - 1e-6
    assert_within_limits(limiter)


def test_a_reservation_whose_task_never_came_is_forgotten_after_its_deadline(limiter):
    now = time.time()
    queue(limiter, 2, now)  # the window's two, at once
    lost = limiter.reserve(limiter.key, max_wait_s=60, member="lost", rank=now + 1, deadline=time.time() + 1.1)
    assert lost.granted and lost.queued and limiter.waiting(limiter.key) == 1
    time.sleep(1.2)  # its task (a worker lost) never takes it
    limiter.reserve(limiter.key, max_wait_s=60, member="next", rank=now + 2, deadline=time.time() + 50)
    assert limiter.waiting(limiter.key) == 0 and limiter.take(limiter.key, "lost", 1.0).state == NONE

