"""Freeze quantities, autoslice and the iceberg variety through the official client."""
from __future__ import annotations

import pytest
import requests
from kiteconnect import exceptions as kex

from tests.support.paper_broker import option, place


def nifty_option(kite, **kw):
    return option(kite, name="NIFTY", **kw)


def test_an_order_above_the_freeze_quantity_is_refused_with_kites_text(broker, kite):
    nifty = nifty_option(kite)
    with pytest.raises(kex.InputException) as refused:
        place(kite, nifty, quantity=28 * 65)
    assert str(refused.value) == ("The order quantity 1820 (28 lots) is higher than the maximum quantity of 1755 "
                                  "(27 lots) allowed by the exchanges. Please reduce the order quantity or use "
                                  "iceberg orders.")
    assert kite.order_history(place(kite, nifty, quantity=27 * 65))[-1]["status"] == "COMPLETE"

    bank = option(kite, name="BANKNIFTY")
    with pytest.raises(kex.InputException, match=r"quantity 630 \(21 lots\) .* maximum quantity of 600 \(20 lots\)"):
        place(kite, bank, quantity=21 * 30)

    resting = place(kite, nifty, order_type="LIMIT", price=0.05, market_protection=None)
    with pytest.raises(kex.InputException, match="maximum quantity of 1755"):
        kite.modify_order("regular", resting, quantity=28 * 65)
    assert kite.order_history(resting)[-1]["quantity"] == 65


def test_freeze_quantities_can_be_changed_at_run_time(broker, kite):
    nifty = nifty_option(kite)
    try:
        assert broker.settings(freeze_quantities={"NIFTY": 650})["freeze_quantities"]["NIFTY"] == 650
        with pytest.raises(kex.InputException, match=r"maximum quantity of 650 \(10 lots\)"):
            place(kite, nifty, quantity=11 * 65)
        bad = requests.post(broker.root + "/_sim/settings", json={"freeze_quantities": {"NIFTY": -5}}, timeout=5)
        assert bad.status_code == 400 and "positive integer" in bad.json()["error"]
    finally:
        broker.settings(freeze_quantities={"NIFTY": 1755})


def test_autoslice_places_freeze_sized_children_and_one_can_fail_on_margin(broker, kite, api_key):
    broker.set_market(frozen=True)
    nifty = nifty_option(kite, min_price=5.0)
    ask = kite.quote([f"NFO:{nifty['tradingsymbol']}"])[f"NFO:{nifty['tradingsymbol']}"]["depth"]["sell"][0]["price"]
    slice_cost = 1755 * ask
    requests.post(broker.root + "/_sim/accounts", json={"api_key": api_key, "cash": 2.5 * slice_cost},
                  timeout=5).raise_for_status()

    answer = kite.place_autoslice_order(variety="regular", exchange="NFO", tradingsymbol=nifty["tradingsymbol"],
                                        transaction_type="BUY", quantity=3 * 1755 + 65, product="NRML",
                                        order_type="MARKET", market_protection=-1, tag="slices")
    parent, children = answer["order_id"], answer["children"]
    assert len(children) == 4
    placed = [c["order_id"] for c in children if "order_id" in c]
    failed = [c["error"] for c in children if "error" in c]
    assert len(placed) == 3 and len(failed) == 1   # two full slices and the small remainder fit, one does not
    assert failed[0]["code"] == 400 and failed[0]["error_type"] == "MarginException" and failed[0]["data"] is None
    assert failed[0]["message"].startswith("Insufficient funds. Required margin is ")
    book = {o["order_id"]: o for o in kite.orders()}
    assert parent not in book
    assert sorted(book[oid]["quantity"] for oid in placed) == [65, 1755, 1755]
    for oid in placed:
        assert book[oid]["tag"] == "slices"
        assert book[oid]["tags"] == ["slices", "autoslice", f"autoslice:{parent}"]
        assert book[oid]["status"] == "COMPLETE"


def test_autoslice_is_refused_when_slicing_is_not_needed_or_too_many_slices(broker, kite):
    nifty = nifty_option(kite)
    common = dict(variety="regular", exchange="NFO", tradingsymbol=nifty["tradingsymbol"], transaction_type="BUY",
                  product="NRML", order_type="MARKET", market_protection=-1)
    with pytest.raises(kex.InputException, match="^Quantity should be greater than or equal to 3510 for order "
                                                 "slicing.$"):
        kite.place_autoslice_order(quantity=27 * 65, **common)
    with pytest.raises(kex.InputException, match="maximum of 10 slices"):
        kite.place_autoslice_order(quantity=10 * 1755 + 65, **common)
    assert kite.orders() == []


def test_iceberg_legs_are_placed_one_after_another(broker, kite):
    broker.set_market(frozen=True)
    nifty = nifty_option(kite)
    depth = kite.quote([f"NFO:{nifty['tradingsymbol']}"])[f"NFO:{nifty['tradingsymbol']}"]["depth"]["sell"]
    parent = kite.place_order(variety="iceberg", exchange="NFO", tradingsymbol=nifty["tradingsymbol"],
                              transaction_type="BUY", quantity=3 * 65, product="NRML", order_type="LIMIT",
                              price=depth[-1]["price"], iceberg_legs=2, iceberg_quantity=2 * 65)
    legs = sorted((o for o in kite.orders() if o["variety"] == "iceberg"), key=lambda o: o["meta"]["iceberg"]["leg"])
    assert [leg["order_id"] for leg in legs][0] == parent and len(legs) == 2
    assert [leg["quantity"] for leg in legs] == [130, 65]          # 3 lots in 2 legs: the first gets the extra lot
    assert [leg["parent_order_id"] for leg in legs] == [None, parent]
    assert [leg["status"] for leg in legs] == ["COMPLETE", "COMPLETE"]
    assert legs[0]["meta"]["iceberg"] == {"leg": 1, "legs": 2, "leg_quantity": 130, "total_quantity": 195,
                                          "remaining_quantity": 65}
    assert legs[1]["meta"]["iceberg"]["remaining_quantity"] == 0
    net = {p["tradingsymbol"]: p for p in kite.positions()["net"]}[nifty["tradingsymbol"]]
    assert net["quantity"] == 195


def test_an_iceberg_waits_for_its_leg_to_fill_and_stops_when_it_is_cancelled(broker, kite):
    nifty = nifty_option(kite)
    parent = kite.place_order(variety="iceberg", exchange="NFO", tradingsymbol=nifty["tradingsymbol"],
                              transaction_type="BUY", quantity=4 * 65, product="NRML", order_type="LIMIT",
                              price=0.05, iceberg_legs=4, iceberg_quantity=65)
    assert [o["order_id"] for o in kite.orders()] == [parent]   # the next leg waits for this one to fill
    kite.cancel_order("iceberg", parent)
    orders = kite.orders()
    assert len(orders) == 1 and orders[0]["status"] == "CANCELLED"


@pytest.mark.parametrize("legs, leg_quantity, message", [
    (1, 130, "Invalid `iceberg_legs`"), (51, 65, "Invalid `iceberg_legs`"), (2, 100, "Invalid `iceberg_quantity`"),
])
def test_iceberg_parameters_are_checked(broker, kite, legs, leg_quantity, message):
    nifty = nifty_option(kite)
    with pytest.raises(kex.InputException, match=message):
        kite.place_order(variety="iceberg", exchange="NFO", tradingsymbol=nifty["tradingsymbol"],
                         transaction_type="BUY", quantity=2 * 65, product="NRML", order_type="LIMIT", price=0.05,
                         iceberg_legs=legs, iceberg_quantity=leg_quantity)
