"""Which postbacks are confirmed with the broker, and when the broker's record refutes one
(app/orders/postback_verification.py) — without a database or a broker."""
from __future__ import annotations

import pytest

from app.models import Order
from app.orders.postback_verification import is_refuted, needs_confirmation


def order(status: str = "OPEN", filled: int = 0) -> Order:
    return Order(id="o1", account_id="primary", status=status, filled_quantity=filled, tag="tso1",
                 broker_order_id="b1", quantity=75)


@pytest.mark.parametrize("claim, needed", [
    ({"status": "COMPLETE", "filled_quantity": 75}, True),
    ({"status": "CANCELLED"}, True),
    ({"status": "REJECTED"}, True),
    ({"status": "OPEN", "filled_quantity": 25}, True),        # new fills
    ({"status": "UPDATE", "price": 101.5}, True),             # a modification
    ({"status": "OPEN", "modified": True}, True),
    ({"status": "OPEN", "filled_quantity": 0}, False),        # the order accepted: nothing to confirm
    ({"status": "TRIGGER PENDING"}, False),
])
def test_what_would_end_an_order_or_change_its_fills_or_terms_is_confirmed(claim, needed):
    assert needs_confirmation(order(), claim) is needed


def test_an_order_already_final_or_filled_so_far_needs_no_confirmation():
    assert needs_confirmation(order("COMPLETE", 75), {"status": "COMPLETE", "filled_quantity": 75}) is False
    assert needs_confirmation(order("OPEN", 25), {"status": "OPEN", "filled_quantity": 25}) is False


@pytest.mark.parametrize("claim, truth, refuted", [
    ({"status": "COMPLETE", "filled_quantity": 75}, {"status": "OPEN", "filled_quantity": 0}, True),
    ({"status": "CANCELLED"}, {"status": "COMPLETE", "filled_quantity": 75}, True),
    ({"status": "OPEN", "filled_quantity": 50}, {"status": "OPEN", "filled_quantity": 25}, True),
    ({"status": "COMPLETE", "filled_quantity": 75}, {"status": "COMPLETE", "filled_quantity": 75}, False),
    # The broker ahead of the claim: a later update overtook this postback, nothing false in it.
    ({"status": "OPEN", "filled_quantity": 25}, {"status": "COMPLETE", "filled_quantity": 75}, False),
    ({"status": "UPDATE", "price": 101.5}, {"status": "OPEN", "price": 101.0, "modified": True}, False),
])
def test_a_claim_ahead_of_the_brokers_record_is_refuted(claim, truth, refuted):
    assert is_refuted(claim, truth) is refuted
