"""Settling a batch, the decisions alone (app/batches/decisions.py): when a batch can be decided,
its outcome, each leg's rollback step, the reversing order, and whether the batch is flat again —
from the facts settlement.py reads (legs, the broker's view), with no database and no broker."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.batches import decisions
from app.batches.decisions import (DONE, FAILED, RollbackStep, awaits_verdict, decide, every_verdict_in,
                                   needs_cancel, net_fills, none_being_placed, not_flat_error, plan_rollback,
                                   reversal_fields, reversal_result, rollback_outcome)
from app.batches.service import COMPLETED, PARTIAL, ROLLBACK_FAILED, ROLLED_BACK, RUNNING


@dataclass
class Leg:
    leg_index: int
    status: str
    error: str | None = None
    exchange: str = "NFO"
    tradingsymbol: str = "NIFTY30JAN24000CE"
    instrument_token: int = 9101
    transaction_type: str = "BUY"
    product: str = "NRML"


# --- when a batch can be decided ----------------------------------------------------------------

def test_every_verdict_is_in_when_each_placed_leg_has_the_brokers_word():
    assert every_verdict_in([("OPEN", "OPEN"), ("COMPLETE", "COMPLETE"), ("REJECTED", "REJECTED")])
    assert every_verdict_in([("OPEN", "TRIGGER PENDING"), ("DEAD_LETTER", None), ("CANCELLED", None)])


def test_a_leg_acknowledged_but_not_judged_keeps_the_batch_waiting():
    assert not every_verdict_in([("COMPLETE", "COMPLETE"), ("OPEN", "VALIDATION PENDING")])
    assert not every_verdict_in([("COMPLETE", "COMPLETE"), ("OPEN", None)])
    assert not every_verdict_in([("COMPLETE", "COMPLETE"), ("SUBMITTING", None)])
    assert not every_verdict_in([("QUEUED", None)])


def test_a_batch_without_legs_has_no_verdicts():
    assert not every_verdict_in([])


def test_the_watchdog_waits_while_a_leg_is_being_placed():
    assert none_being_placed(["OPEN", "COMPLETE", "REJECTED", "DEAD_LETTER", "CANCELLED"])
    assert none_being_placed([])
    assert not none_being_placed(["COMPLETE", "SUBMITTING"])
    assert not none_being_placed(["QUEUED"])


@pytest.mark.parametrize("status, broker_order_id, broker_status, waits", [
    ("OPEN", "b1", "OPEN PENDING", True), ("OPEN", "b1", None, True), ("COMPLETE", "b1", "PUT ORDER REQ RECEIVED", True),
    ("OPEN", "b1", "OPEN", False), ("OPEN", "b1", "REJECTED", False),  # the verdict is in
    ("OPEN", None, None, False),  # not placed
    ("REJECTED", "b1", None, False), ("SUBMITTING", "b1", None, False),  # not an accepted leg
    (None, None, None, False),  # no such order
])
def test_a_placed_leg_awaits_the_brokers_verdict(status, broker_order_id, broker_status, waits):
    assert awaits_verdict(status, broker_order_id, broker_status) is waits


# --- the outcome --------------------------------------------------------------------------------

def test_every_leg_succeeded_is_completed():
    legs = [Leg(0, "COMPLETE"), Leg(1, "OPEN")]  # a LIMIT leg still open succeeded too
    decision = decide(legs, rollback_on_failure=True)
    assert (decision.status, decision.settled, decision.error) == (COMPLETED, True, None)
    assert decision.succeeded == tuple(legs) and decision.failed == () and decision.rollback == ()


def test_a_failed_leg_rolls_back_the_ones_that_succeeded():
    legs = [Leg(0, "COMPLETE"), Leg(1, "REJECTED", "InputException (400): margin"), Leg(2, "OPEN"),
            Leg(3, "DEAD_LETTER", "NetworkException (503): down")]
    decision = decide(legs, rollback_on_failure=True)
    assert (decision.status, decision.settled) == (RUNNING, False)
    assert decision.rollback == (legs[0], legs[2]) == decision.succeeded
    assert decision.failed == (legs[1], legs[3])
    assert decision.error == "leg 1: REJECTED InputException (400): margin; leg 3: DEAD_LETTER NetworkException (503): down"


def test_without_rollback_a_failed_leg_makes_the_batch_partial():
    decision = decide([Leg(0, "COMPLETE"), Leg(1, "CANCELLED")], rollback_on_failure=False)
    assert (decision.status, decision.settled, decision.rollback) == (PARTIAL, True, ())
    assert decision.error == "leg 1: CANCELLED"


@pytest.mark.parametrize("rollback_on_failure", [True, False])
def test_nothing_succeeded_is_rolled_back_already(rollback_on_failure):
    decision = decide([Leg(0, "REJECTED", "no"), Leg(1, "CANCELLED")], rollback_on_failure)
    assert (decision.status, decision.settled, decision.rollback) == (ROLLED_BACK, True, ())
    assert decision.error == "leg 0: REJECTED no; leg 1: CANCELLED"


def test_the_error_is_at_most_2000_characters():
    decision = decide([Leg(0, "COMPLETE")] + [Leg(i, "REJECTED", "x" * 300) for i in range(1, 10)], True)
    assert len(decision.error) == 2000


# --- rolling a leg back ---------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["OPEN", "TRIGGER PENDING", "OPEN PENDING", "MODIFY PENDING", "AMO REQ RECEIVED"])
def test_a_live_leg_is_cancelled_first_and_waited_for(status):
    state = {"status": status, "filled_quantity": 25}
    assert needs_cancel(state)
    # Still live after the cancel: reversing now could double the exit.
    assert plan_rollback(75, state) == RollbackStep(decisions.WAIT, 0)


@pytest.mark.parametrize("status", ["CANCELLED", "REJECTED"])
def test_a_leg_that_never_filled_was_rolled_back_by_its_cancel(status):
    for filled in (0, None, "0"):
        state = {"status": status, "filled_quantity": filled}
        assert not needs_cancel(state)
        assert plan_rollback(75, state) == RollbackStep(decisions.CANCELLED_ONLY, 75)


def test_a_fill_is_reversed_for_the_filled_quantity():
    assert plan_rollback(150, {"status": "COMPLETE", "filled_quantity": 150}) == RollbackStep(decisions.REVERSE, 150)
    # The cancel lost the race to part of the fill: reverse what filled.
    assert plan_rollback(150, {"status": "CANCELLED", "filled_quantity": "75"}) == RollbackStep(decisions.REVERSE, 75)


def test_the_reversal_is_a_market_order_the_other_way():
    sold = Leg(2, "COMPLETE", transaction_type="SELL", product="MIS")
    assert reversal_fields(sold, 75) == {
        "exchange": "NFO", "tradingsymbol": "NIFTY30JAN24000CE", "instrument_token": 9101, "transaction_type": "BUY",
        "quantity": 75, "product": "MIS", "order_type": "MARKET", "variety": "regular", "validity": "DAY",
        "market_protection": -1.0}
    assert reversal_fields(Leg(0, "COMPLETE"), 150)["transaction_type"] == "SELL"


def test_the_reversals_outcome_is_the_actions():
    assert reversal_result("COMPLETE", None) == (DONE, None)
    assert reversal_result("OPEN", None) == (DONE, None)
    assert reversal_result("REJECTED", "InputException (400): x") == (FAILED, "reversal REJECTED: InputException (400): x")
    assert reversal_result("DEAD_LETTER", None) == (FAILED, "reversal DEAD_LETTER: None")


# --- flat again ---------------------------------------------------------------------------------------

BROKER_ORDERS = [
    {"order_id": "b1", "tradingsymbol": "NIFTY30JAN24000CE", "transaction_type": "BUY", "filled_quantity": 75},
    {"order_id": "b2", "tradingsymbol": "NIFTY30JAN24000PE", "transaction_type": "SELL", "filled_quantity": 75},
    {"order_id": "r1", "tradingsymbol": "NIFTY30JAN24000CE", "transaction_type": "SELL", "filled_quantity": 75},
    {"order_id": "r2", "tradingsymbol": "NIFTY30JAN24000PE", "transaction_type": "BUY", "filled_quantity": 50},
    {"order_id": "x9", "tradingsymbol": "NIFTY30JAN24000PE", "transaction_type": "SELL", "filled_quantity": 500},
    {"order_id": 7, "tradingsymbol": "NIFTY30JANFUT", "transaction_type": "BUY", "filled_quantity": None},
]


def test_net_fills_count_only_the_batchs_orders_from_the_brokers_records():
    """The account may trade the same symbols elsewhere (x9): only this batch's orders count."""
    assert net_fills(BROKER_ORDERS, ["b1", "b2", "r1", "r2", None]) == {
        "NIFTY30JAN24000CE": 0, "NIFTY30JAN24000PE": -25}
    assert net_fills(BROKER_ORDERS, ["7"]) == {"NIFTY30JANFUT": 0}  # ids compared as text; nothing filled
    assert net_fills(BROKER_ORDERS, []) == {}


def test_flat_and_every_action_done_is_rolled_back():
    assert rollback_outcome({"A": 0, "B": 0}, []) == ROLLED_BACK
    assert rollback_outcome({}, []) == ROLLED_BACK


def test_exposure_left_or_a_failed_action_is_a_failed_rollback():
    assert rollback_outcome({"A": 0, "B": -25}, []) == ROLLBACK_FAILED
    assert rollback_outcome({"A": 0}, ["an action not DONE"]) == ROLLBACK_FAILED


def test_a_failed_rollback_says_what_is_left_open():
    net = {"NIFTY30JAN24000CE": 0, "NIFTY30JAN24000PE": -25}
    assert not_flat_error("leg 1: REJECTED no", net) == (
        "leg 1: REJECTED no; not flat after rollback: {'NIFTY30JAN24000PE': -25}")
    assert not_flat_error(None, net) == "not flat after rollback: {'NIFTY30JAN24000PE': -25}"
    assert len(not_flat_error("x" * 3000, net)) == 2000
