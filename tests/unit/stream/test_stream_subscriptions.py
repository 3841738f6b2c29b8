"""SubscriptionPlan: capacity, balance over accounts and connections, stickiness."""
import pytest

from workers.stream.connection_plan import CapacityExceeded, SubscriptionPlan


def tokens(n, start=1000):
    return {start + i: "quote" for i in range(n)}


def test_capacity_is_accounts_times_connections_times_instruments():
    plan = SubscriptionPlan(max_connections=3, per_connection=3000)
    assert plan.capacity().total == 0
    plan.set_accounts(["a", "b"])
    cap = plan.capacity()
    assert (cap.total, cap.used, cap.free, cap.accounts) == (18_000, 0, 18_000, 2)


def test_9000_instruments_fill_one_accounts_3_connections_exactly():
    plan = SubscriptionPlan(3, 3000)
    plan.set_accounts(["a"])
    plan.set_desired(tokens(9000))
    assert sorted(plan.load().values()) == [3000, 3000, 3000]
    assert plan.unassigned() == []
    with pytest.raises(CapacityExceeded) as err:
        plan.subscribe([99_999_999])
    assert err.value.capacity == 9000
    assert 99_999_999 not in plan.desired  # refused requests change nothing


def test_balanced_across_accounts_then_connections():
    plan = SubscriptionPlan(3, 3000)
    plan.set_accounts(["a", "b"])
    plan.set_desired(tokens(2))
    assert set(plan.slot_of.values()) == {("a", 0), ("b", 0)}
    plan.set_desired(tokens(600))
    assert sorted(plan.load().values()) == [100] * 6


def test_sticky_placement_and_mode_changes_touch_only_their_connection():
    plan = SubscriptionPlan(3, 10)
    plan.set_accounts(["a"])
    plan.set_desired(tokens(9))
    before = dict(plan.slot_of)
    changed = plan.set_mode([1000], "full")
    assert changed == {before[1000]}
    assert plan.slots[before[1000]][1000] == "full"
    changed = plan.subscribe([5000], "ltp")
    assert all(plan.slot_of[t] == s for t, s in before.items())  # nobody moved
    assert len(changed) == 1
    changed = plan.unsubscribe([1001, 1002])
    assert changed == {before[1001], before[1002]}
    assert 1001 not in plan.slot_of and 1001 not in plan.desired
    with pytest.raises(ValueError):
        plan.subscribe([1], "fast")


def test_account_loss_moves_instruments_and_overflow_waits_for_capacity():
    plan = SubscriptionPlan(1, 10)
    plan.set_accounts(["a", "b"])
    plan.set_desired(tokens(16))
    assert sorted(plan.load().values()) == [8, 8]
    plan.set_accounts(["a"])  # b's lease went to another process
    assert plan.load() == {("a", 0): 10}
    assert len(plan.unassigned()) == 6
    plan.unsubscribe([1000])  # shrinking is allowed while over capacity
    assert len(plan.desired) == 15
    plan.set_accounts(["a", "c"])
    assert plan.unassigned() == []
    assert sorted(plan.load().values()) == [5, 10]
