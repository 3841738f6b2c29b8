"""What is sent to kite.place_order for a stored order (app/orders/execution.py placement_params)."""
from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

from app.orders.execution import placement_params


def stored(**changes):
    order = dict(variety="regular", exchange="NFO", tradingsymbol="NIFTY30JAN24000CE", transaction_type="BUY",
                 quantity=75, product="NRML", order_type="LIMIT", validity="DAY", validity_ttl=None,
                 price=Decimal("120.50"), trigger_price=None, disclosed_quantity=None, market_protection=None,
                 tag="t0123456789abcdef")
    order.update(changes)
    return SimpleNamespace(**order)


def test_a_ttl_order_is_sent_with_its_minutes():
    params = placement_params(stored(validity="TTL", validity_ttl=15))
    assert (params["validity"], params["validity_ttl"]) == ("TTL", 15)


def test_day_and_ioc_orders_are_sent_without_validity_ttl():
    assert "validity_ttl" not in placement_params(stored())
    ioc = placement_params(stored(validity="IOC"))
    assert ioc["validity"] == "IOC" and "validity_ttl" not in ioc


def test_market_orders_keep_their_protection_whatever_the_validity():
    assert placement_params(stored(order_type="MARKET", price=None, validity="TTL", validity_ttl=5,
                                   market_protection=-1.0))["market_protection"] == -1.0
    assert placement_params(stored(order_type="SL-M", price=None, trigger_price=Decimal("100"),
                                   validity="IOC"))["market_protection"] == -1
