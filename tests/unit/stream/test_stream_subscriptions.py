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


# --- rebalance: an account that joins (or comes back) gets its fair share -------------------

def moved(before: dict, plan: SubscriptionPlan) -> set[int]:
    return {t for t, slot in before.items() if plan.slot_of.get(t) != slot}


def per_account(plan: SubscriptionPlan) -> dict[str, int]:
    totals = {a: 0 for a in plan.accounts}
    for (account, _), n in plan.load().items():
        totals[account] += n
    return totals


def test_a_new_account_gets_half_by_moving_only_that_half():
    plan = SubscriptionPlan(3, 3000)
    plan.set_accounts(["a"])
    plan.set_desired({**tokens(60), **{t: "full" for t in tokens(30, start=5000)}})
    before = dict(plan.slot_of)
    plan.set_accounts(["a", "b"])
    assert per_account(plan) == {"a": 90, "b": 0}  # placement alone gives a newcomer nothing
    changed = plan.rebalance()
    assert sorted(plan.load().values()) == [15] * 6
    assert len(moved(before, plan)) == 45  # exactly b's share moved; the rest kept its socket
    assert changed == set(plan.slots)
    assert {t: plan.slots[plan.slot_of[t]][t] for t in before} == plan.desired  # modes travel along
    assert plan.unassigned() == []


def test_uneven_counts_end_within_one_per_connection_with_the_fewest_moves():
    plan = SubscriptionPlan(3, 10)
    plan.set_accounts(["a"])
    plan.set_desired(tokens(25))
    assert sorted(plan.load().values()) == [8, 8, 9]
    before = dict(plan.slot_of)
    plan.set_accounts(["a", "b"])
    plan.rebalance()
    loads = plan.load().values()
    assert max(loads) - min(loads) <= 1
    assert per_account(plan) == {"a": 13, "b": 12}
    assert len(moved(before, plan)) == 12  # what b needs, and nothing shuffled within a


def test_a_returning_account_takes_back_its_share_after_a_failover():
    plan = SubscriptionPlan(3, 3000)
    plan.set_accounts(["a", "b"])
    plan.set_desired(tokens(40))
    plan.set_accounts(["a"])  # b's session died: a carries everything
    assert per_account(plan) == {"a": 40} and plan.unassigned() == []
    before = dict(plan.slot_of)
    plan.set_accounts(["a", "b"])
    plan.rebalance()
    loads = plan.load().values()
    assert max(loads) - min(loads) <= 1
    # Within one per connection: a keeps a seventh on each of its three, the fewest moves.
    assert per_account(plan) == {"a": 21, "b": 19}
    assert len(moved(before, plan)) == 19


def test_rebalance_respects_per_connection_after_the_waiting_ones_are_placed():
    plan = SubscriptionPlan(1, 10)
    plan.set_accounts(["a", "b"])
    plan.set_desired(tokens(14))
    plan.set_accounts(["a"])
    assert plan.load() == {("a", 0): 10} and len(plan.unassigned()) == 4
    plan.set_accounts(["a", "b"])  # the 4 waiting go to b first
    assert plan.load() == {("a", 0): 10, ("b", 0): 4}
    plan.rebalance()
    assert plan.load() == {("a", 0): 7, ("b", 0): 7}
    plan.set_accounts(["a", "b", "c"])
    plan.rebalance()
    assert sorted(plan.load().values()) == [4, 5, 5]
    assert all(n <= 10 for n in plan.load().values())


def test_rebalance_of_an_even_plan_moves_nothing():
    plan = SubscriptionPlan(3, 10)
    assert plan.rebalance() == set()
    plan.set_accounts(["a", "b"])
    plan.set_desired(tokens(2))  # fewer instruments than connections: already even
    before = dict(plan.slot_of)
    assert plan.rebalance() == set()
    plan.set_desired(tokens(20))
    assert plan.rebalance() == set() and moved(before, plan) == set()
