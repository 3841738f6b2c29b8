"""Validity IOC and TTL through the service to the paper broker (official client) and back."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.support.orders import resting_limit_order
from tests.support.waiting import wait_for


def test_ioc_limit_order_far_from_the_market_ends_cancelled(orders, option):
    response = orders.place(resting_limit_order(orders.broker, option, validity="IOC"))
    assert response.status_code == 202, response.get_json()
    placed = response.get_json()
    assert (placed["validity"], placed["validity_ttl"]) == ("IOC", None)

    record = orders.wait_status(placed["id"], "CANCELLED")
    [at_broker] = orders.broker_orders(placed["tag"])
    assert (at_broker["status"], at_broker["validity"], at_broker["filled_quantity"]) == ("CANCELLED", "IOC", 0)
    assert record["broker_order_id"] == at_broker["order_id"]
    assert record["filled_quantity"] == 0 and record["validity"] == "IOC"
    assert record["status_message"] == at_broker["status_message"]
    assert "IOC" in record["status_message"]


def test_ttl_order_is_sent_with_its_minutes_shown_and_lapses(orders, option):
    response = orders.place(resting_limit_order(orders.broker, option, validity="TTL", validity_ttl=3))
    assert response.status_code == 202, response.get_json()
    placed = response.get_json()
    assert (placed["validity"], placed["validity_ttl"]) == ("TTL", 3)

    record = orders.wait_status(placed["id"], "OPEN")
    assert (record["validity"], record["validity_ttl"]) == ("TTL", 3)
    [at_broker] = orders.broker_orders(placed["tag"])
    assert (at_broker["status"], at_broker["validity"], at_broker["validity_ttl"]) == ("OPEN", "TTL", 3)

    # Past its 3 minutes on the broker's session clock, the broker cancels it and says why.
    later = datetime.now(timezone.utc) + timedelta(minutes=4)
    orders.broker.settings(now=later.isoformat())
    try:
        record = orders.wait_status(placed["id"], "CANCELLED")
    finally:
        orders.broker.settings(now=None)
    [at_broker] = orders.broker_orders(placed["tag"])
    assert at_broker["status"] == "CANCELLED"
    assert record["status_message"] == at_broker["status_message"]
    assert "3 minute(s) (TTL) lapsed" in record["status_message"]
    assert record["validity_ttl"] == 3


def test_day_order_is_sent_without_validity_ttl(orders, option):
    response = orders.place(resting_limit_order(orders.broker, option))
    assert response.status_code == 202, response.get_json()
    placed = response.get_json()
    assert (placed["validity"], placed["validity_ttl"]) == ("DAY", None)
    orders.wait_status(placed["id"], "OPEN")
    [at_broker] = wait_for(lambda: orders.broker_orders(placed["tag"]), 5, what="the broker order")
    assert (at_broker["validity"], at_broker["validity_ttl"]) == ("DAY", None)
    assert orders.client.delete(f"/orders/{placed['id']}", headers=orders.headers["primary"]).status_code == 202
    orders.wait_status(placed["id"], "CANCELLED")
