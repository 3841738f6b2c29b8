"""The margin check's decisions (app/broker/margin_check.py), without a broker: which orders the
margin calculator is asked about, when a basket is refused, and what a failed broker call means."""
from __future__ import annotations

from decimal import Decimal

import pytest
import requests
from kiteconnect import exceptions as kite

from app.broker import client as broker_clients
from app.broker.intake_calls import is_broker_failure
from app.broker.margin_check import (InsufficientMargin, MarginCheckUnavailable, margin_orders,
                                     margin_shortfall, unavailable_because)


def columns(**changes) -> dict:
    """A leg as the schemas load it (Order columns)."""
    leg = {"exchange": "NFO", "tradingsymbol": "NIFTY30JAN24000CE", "instrument_token": 1, "transaction_type": "SELL",
           "quantity": 75, "product": "NRML", "order_type": "MARKET", "variety": "regular", "validity": "DAY",
           "price": None, "trigger_price": None, "disclosed_quantity": None, "market_protection": -1.0,
           "client_tag": None}
    leg.update(changes)
    return leg


def basket(final_total) -> dict:
    return {"initial": {"total": 270000.0}, "final": {"total": final_total}, "orders": [], "charges": {}}


def test_legs_become_the_margin_calculators_orders():
    orders = margin_orders([columns(), columns(order_type="LIMIT", price=Decimal("12.35"), transaction_type="BUY"),
                            columns(order_type="SL", price=Decimal("20.00"), trigger_price=Decimal("19.50"),
                                    variety="amo")])
    assert orders[0] == {"exchange": "NFO", "tradingsymbol": "NIFTY30JAN24000CE", "transaction_type": "SELL",
                         "variety": "regular", "product": "NRML", "order_type": "MARKET", "quantity": 75,
                         "price": 0.0, "trigger_price": 0.0}  # MARKET: the broker values it at the touch
    assert (orders[1]["transaction_type"], orders[1]["price"], orders[1]["trigger_price"]) == ("BUY", 12.35, 0.0)
    assert (orders[2]["variety"], orders[2]["price"], orders[2]["trigger_price"]) == ("amo", 20.0, 19.5)


def test_a_basket_beyond_the_available_margin_is_refused_with_both_amounts_to_the_paisa():
    refusal = margin_shortfall(basket(135210.456), {"net": 50000})
    assert isinstance(refusal, InsufficientMargin)
    assert (refusal.required, refusal.available) == (Decimal("135210.46"), Decimal("50000.00"))
    assert refusal.details == {"required": 135210.46, "available": 50000.0, "shortfall": 85210.46}
    assert "₹135,210.46" in str(refusal) and "₹50,000.00" in str(refusal) and "nothing was placed" in str(refusal)


@pytest.mark.parametrize("final_total, net", [
    (73000.0, 100000.0),   # a hedged basket: its final fits even though its initial would not
    (50000.0, 50000.0),    # exactly the available margin
    (50000.004, 50000.0),  # equal to the paisa
    (-1200.0, 0.0),        # a basket that frees margin (it reduces the open positions)
    ("73000.5", "73000.50"),
])
def test_a_basket_within_the_available_margin_passes(final_total, net):
    assert margin_shortfall(basket(final_total), {"net": net}) is None


@pytest.mark.parametrize("basket_margin, equity", [
    ({"initial": {"total": 1.0}}, {"net": 1.0}),   # no final
    (basket(None), {"net": 1.0}),
    (basket(float("nan")), {"net": 1.0}),
    (basket(True), {"net": 1.0}),
    (basket("lots"), {"net": 1.0}),
    (basket(10.0), {}),                              # no net
    (basket(10.0), {"net": float("inf")}),
    ([], {"net": 1.0}),
])
def test_an_answer_without_both_figures_is_no_verdict(basket_margin, equity):
    with pytest.raises(MarginCheckUnavailable) as unavailable:
        margin_shortfall(basket_margin, equity)
    assert "could not be read" in unavailable.value.cause and unavailable.value.retryable


@pytest.mark.parametrize("exc", [
    kite.NetworkException("Too many requests", code=429), kite.NetworkException("down", code=503),
    kite.GeneralException("oops", code=502), requests.ReadTimeout("read timed out"), requests.ConnectionError(),
    kite.DataException("Unknown Content-Type"),
])
def test_a_broker_that_cannot_answer_makes_the_check_unavailable_and_retryable(exc):
    assert is_broker_failure(exc)
    unavailable = unavailable_because("primary", exc)
    assert unavailable.retryable and unavailable.cause.startswith("the broker did not answer")
    assert unavailable.details["retryable"] is True
    message = str(unavailable)
    assert "nothing was placed" in message and "Retry" in message and '"margin_check": false' in message


def test_a_broker_refusal_makes_the_check_unavailable_not_retryable_and_an_expired_session_is_forgotten():
    broker_clients._clients["acct-margin-unit"] = (0.0, "key", object())
    expired = kite.TokenException("Incorrect `api_key` or `access_token`.", code=403)
    assert is_broker_failure(expired)
    unavailable = unavailable_because("acct-margin-unit", expired)
    assert not unavailable.retryable and "TokenException (403)" in unavailable.cause
    assert "acct-margin-unit" not in broker_clients._clients  # the next call reads the renewed session
    unavailable = unavailable_because("primary", kite.InputException("Invalid `tradingsymbol`."))
    assert not unavailable.retryable and unavailable.cause.startswith("the broker refused it")


@pytest.mark.parametrize("exc", [ZeroDivisionError(), KeyError("total"), AttributeError("margins")])
def test_a_bug_is_not_taken_for_a_broker_failure(exc):
    assert not is_broker_failure(exc)
