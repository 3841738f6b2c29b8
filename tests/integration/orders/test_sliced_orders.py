"""Orders above the freeze quantity: placed as slices through the real worker and the paper broker,
which refuses any single order above the freeze quantity (NIFTY 1,755 = 27 lots of 65)."""
from __future__ import annotations

import pytest

from app.core.db import new_session
from app.models import Order
from app.orders.slicing import MAX_SLICES
from tests.support.environment import BROKER_ACCOUNTS
from tests.support.orders import market_order, resting_limit_order
from tests.support.waiting import wait_for

NIFTY_FREEZE = 1755


@pytest.fixture(scope="session")
def nifty_option(instruments):
    rows = [i for i in instruments.all() if i.segment == "NFO-OPT" and i.name == "NIFTY" and i.instrument_type == "CE"]
    option = sorted(rows, key=lambda i: (i.expiry, i.strike))[len(rows) // 2]
    assert NIFTY_FREEZE % option.lot_size == 0
    return option


@pytest.fixture()
def faults_cleared(orders):
    yield orders.broker
    orders.broker.clear_faults()


def _broker_orders_of(orders, record):
    """The broker's orders carrying the tags of the parent and of each of its slices."""
    book = orders.broker.orders(BROKER_ACCOUNTS["primary"]["api_key"])
    tags = {record["tag"]} | {orders.get(c["id"]).get_json()["tag"] for c in record["children"]}
    return [o for o in book if o["tag"] in tags]


def _order_count() -> int:
    with new_session() as session:
        return session.query(Order).count()


def test_three_freeze_quantities_complete_as_three_slices(orders, nifty_option):
    quantity = 3 * NIFTY_FREEZE
    response = orders.place(market_order(nifty_option, quantity=quantity))
    assert response.status_code == 202, response.get_json()
    placed = response.get_json()
    assert placed["role"] == "parent"
    assert [c["quantity"] for c in placed["children"]] == [NIFTY_FREEZE] * 3

    record = orders.wait_status(placed["id"], "COMPLETE", timeout=30)
    assert record["filled_quantity"] == quantity
    assert record["average_price"] > 0
    assert [c["status"] for c in record["children"]] == ["COMPLETE"] * 3
    assert [c["filled_quantity"] for c in record["children"]] == [NIFTY_FREEZE] * 3
    assert [c["slice_index"] for c in record["children"]] == [0, 1, 2]

    at_broker = _broker_orders_of(orders, record)
    # one broker order per slice, each within the freeze quantity; the parent itself never sent
    assert sorted(o["quantity"] for o in at_broker) == [NIFTY_FREEZE] * 3
    assert not [o for o in at_broker if o["tag"] == record["tag"]]
    assert {c["broker_order_id"] for c in record["children"]} == {o["order_id"] for o in at_broker}
    for child in record["children"]:
        slice_record = orders.get(child["id"]).get_json()
        assert slice_record["parent_id"] == placed["id"] and slice_record["role"] == "slice"
        assert slice_record["attempts"] == 1
    assert [e["to_status"] for e in record["events"]][-1] == "COMPLETE"


def test_remainder_is_the_last_slice(orders, nifty_option):
    quantity = NIFTY_FREEZE + 2 * nifty_option.lot_size
    placed = orders.place(market_order(nifty_option, quantity=quantity)).get_json()
    assert [c["quantity"] for c in placed["children"]] == [NIFTY_FREEZE, 2 * nifty_option.lot_size]
    record = orders.wait_status(placed["id"], "COMPLETE", timeout=30)
    assert record["filled_quantity"] == quantity


def test_more_than_ten_slices_is_refused_with_nothing_sent(orders, nifty_option):
    broker_before = len(orders.broker.orders(BROKER_ACCOUNTS["primary"]["api_key"]))
    stored_before = _order_count()
    quantity = (MAX_SLICES + 1) * NIFTY_FREEZE
    response = orders.place(market_order(nifty_option, quantity=quantity))
    assert response.status_code == 422, response.get_json()
    message = " ".join(response.get_json()["error"]["details"]["quantity"])
    assert f"{NIFTY_FREEZE} (27 lots)" in message and "at most 10" in message and "11 slices" in message
    assert _order_count() == stored_before
    assert len(orders.broker.orders(BROKER_ACCOUNTS["primary"]["api_key"])) == broker_before
    # ten slices' worth is the largest order accepted
    placed = orders.place(market_order(nifty_option, quantity=MAX_SLICES * NIFTY_FREEZE))
    assert placed.status_code == 202, placed.get_json()
    assert len(placed.get_json()["children"]) == MAX_SLICES
    orders.wait_status(placed.get_json()["id"], "COMPLETE", timeout=40)


def test_rejected_slice_ends_parent_partial_with_what_filled(orders, nifty_option, faults_cleared):
    faults_cleared.set_faults(reject_next=1)  # whichever slice reaches the broker first is rejected
    placed = orders.place(market_order(nifty_option, quantity=3 * NIFTY_FREEZE)).get_json()
    record = orders.wait_status(placed["id"], "PARTIAL", timeout=30)
    assert record["filled_quantity"] == 2 * NIFTY_FREEZE
    statuses = sorted(c["status"] for c in record["children"])
    assert statuses == ["COMPLETE", "COMPLETE", "REJECTED"]
    rejected = next(c for c in record["children"] if c["status"] == "REJECTED")
    assert rejected["id"] in record["error"] and "REJECTED" in record["error"]
    assert "RMS" in record["error"]  # the broker's reason, carried to the parent
    events = [e for e in record["events"] if e["to_status"] == "PARTIAL"]
    assert len(events) == 1
    # a rejection is final: nothing placed again
    assert len(_broker_orders_of(orders, record)) == 3


def test_all_slices_rejected_ends_parent_rejected(orders, nifty_option, faults_cleared):
    faults_cleared.set_faults(reject_symbols=[nifty_option.tradingsymbol])
    placed = orders.place(market_order(nifty_option, quantity=2 * NIFTY_FREEZE)).get_json()
    record = orders.wait_status(placed["id"], "REJECTED", timeout=30)
    assert record["filled_quantity"] == 0
    assert [c["status"] for c in record["children"]] == ["REJECTED", "REJECTED"]
    assert all(c["id"] in record["error"] for c in record["children"])


def test_idempotent_replay_returns_the_same_parent(orders, nifty_option):
    body = market_order(nifty_option, quantity=2 * NIFTY_FREEZE)
    first = orders.place(body, key="sliced-replay-1")
    assert first.status_code == 202
    stored_after_first = _order_count()
    again = orders.place(body, key="sliced-replay-1")
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["id"] == first.get_json()["id"]
    assert [c["id"] for c in again.get_json()["children"]] == [c["id"] for c in first.get_json()["children"]]
    record = orders.wait_status(first.get_json()["id"], "COMPLETE", timeout=30)
    late = orders.place(body, key="sliced-replay-1")
    assert late.status_code == 200 and late.get_json()["status"] == "COMPLETE"
    assert _order_count() == stored_after_first
    assert len(_broker_orders_of(orders, record)) == 2


def test_cancel_parent_cancels_its_open_slices(orders, client, headers, nifty_option):
    body = resting_limit_order(orders.broker, nifty_option, quantity=3 * NIFTY_FREEZE)
    placed = orders.place(body).get_json()
    wait_for(lambda: all(c["status"] == "OPEN" for c in orders.get(placed["id"]).get_json()["children"]),
             30, 0.05, "every slice OPEN at the broker")
    assert orders.get(placed["id"]).get_json()["status"] == "OPEN"

    patch = client.patch(f"/orders/{placed['id']}", json={"price": body["price"]}, headers=headers["primary"])
    assert patch.status_code == 409
    assert "sliced order cannot be modified" in patch.get_json()["error"]["message"]

    response = client.delete(f"/orders/{placed['id']}", headers=headers["primary"])
    assert response.status_code == 202, response.get_json()
    record = orders.wait_status(placed["id"], "CANCELLED", timeout=30)
    assert [c["status"] for c in record["children"]] == ["CANCELLED"] * 3
    assert sorted(o["status"] for o in _broker_orders_of(orders, record)) == ["CANCELLED"] * 3
    assert client.delete(f"/orders/{placed['id']}", headers=headers["primary"]).status_code == 409


def test_cancel_right_after_placing_cancels_slices_still_being_placed(orders, client, headers, nifty_option):
    body = resting_limit_order(orders.broker, nifty_option, quantity=4 * NIFTY_FREEZE)
    placed = orders.place(body).get_json()
    response = client.delete(f"/orders/{placed['id']}", headers=headers["primary"])
    assert response.status_code == 202, response.get_json()
    record = orders.wait_status(placed["id"], "CANCELLED", timeout=40)
    assert [c["status"] for c in record["children"]] == ["CANCELLED"] * 4
    # whatever had reached the broker was cancelled there; nothing is left open
    assert all(o["status"] == "CANCELLED" for o in _broker_orders_of(orders, record))


def test_reconciler_repairs_a_parent_whose_refresh_was_lost(orders, nifty_option):
    from sqlalchemy import update

    from app.core.db import session_scope
    from app.orders.reconciliation import reconcile_all

    placed = orders.place(market_order(nifty_option, quantity=2 * NIFTY_FREEZE)).get_json()
    orders.wait_status(placed["id"], "COMPLETE", timeout=30)
    with session_scope() as session:  # as if the process died between a slice's commit and its parent's refresh
        session.execute(update(Order).where(Order.id == placed["id"]).values(status="OPEN", filled_quantity=0))
    assert orders.get(placed["id"]).get_json()["status"] == "OPEN"
    reconcile_all()
    record = orders.get(placed["id"]).get_json()
    assert (record["status"], record["filled_quantity"]) == ("COMPLETE", 2 * NIFTY_FREEZE)
