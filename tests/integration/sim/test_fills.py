"""Partial fills against the displayed depth, and validity (DAY, IOC, TTL), through the official client."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from kiteconnect import KiteConnect

from sim.harness import PaperBroker
from tests.support.paper_broker import option, place
from tests.support.waiting import wait_for


def thin_offer(kite) -> tuple[dict, dict]:
    """A NIFTY call whose best offer is small enough that one more lot stays under the freeze quantity."""
    calls = [i for i in kite.instruments("NFO") if i["name"] == "NIFTY" and i["instrument_type"] == "CE"
             and 30 <= i["last_price"] < 400]
    quotes = kite.quote([f"NFO:{i['tradingsymbol']}" for i in calls])
    for inst in calls:
        offer = quotes[f"NFO:{inst['tradingsymbol']}"]["depth"]["sell"][0]
        if offer["quantity"] + inst["lot_size"] <= 1755:
            return inst, offer
    raise AssertionError("no NIFTY call with a thin best offer")


def test_a_limit_order_larger_than_the_book_fills_partly_then_keeps_its_part_when_cancelled(broker, kite):
    broker.set_market(frozen=True)
    inst, offer = thin_offer(kite)
    oid = place(kite, inst, order_type="LIMIT", price=offer["price"], market_protection=None,
                quantity=offer["quantity"] + inst["lot_size"])
    partial = kite.order_history(oid)[-1]
    assert partial["status"] == "OPEN"
    assert partial["filled_quantity"] == offer["quantity"] and partial["pending_quantity"] == inst["lot_size"]
    assert partial["average_price"] == offer["price"]

    kite.cancel_order("regular", oid)
    done = kite.order_history(oid)[-1]
    assert done["status"] == "CANCELLED" and done["filled_quantity"] == offer["quantity"]
    assert done["cancelled_quantity"] == inst["lot_size"] and done["pending_quantity"] == 0
    assert [t["quantity"] for t in kite.order_trades(oid)] == [offer["quantity"]]
    net = {p["tradingsymbol"]: p for p in kite.positions()["net"]}[inst["tradingsymbol"]]
    assert net["quantity"] == offer["quantity"]


def test_the_rest_of_a_partly_filled_order_fills_as_the_book_refreshes(broker, kite):
    broker.set_market(frozen=True)
    inst, offer = thin_offer(kite)
    oid = place(kite, inst, order_type="LIMIT", price=offer["price"], market_protection=None,
                quantity=offer["quantity"] + inst["lot_size"])
    assert kite.order_history(oid)[-1]["pending_quantity"] == inst["lot_size"]
    spot = broker.market()["spot"][inst["name"]]
    broker.set_market(spot={inst["name"]: spot * 0.99})   # the call cheapens: a fresh book below the limit
    done = kite.order_history(oid)[-1]
    assert done["status"] == "COMPLETE" and done["filled_quantity"] == offer["quantity"] + inst["lot_size"]
    assert len(kite.order_trades(oid)) == 2


def test_ioc_cancels_the_unfilled_part_at_once(broker, kite):
    broker.set_market(frozen=True)
    inst, offer = thin_offer(kite)
    oid = place(kite, inst, order_type="LIMIT", price=offer["price"], market_protection=None, validity="IOC",
                quantity=offer["quantity"] + inst["lot_size"])
    history = kite.order_history(oid)
    assert [h["status"] for h in history][-2:] == ["OPEN", "CANCELLED"]
    assert history[-1]["filled_quantity"] == offer["quantity"] and history[-1]["cancelled_quantity"] == inst["lot_size"]

    unmatched = place(kite, inst, order_type="LIMIT", price=0.05, market_protection=None, validity="IOC")
    last = kite.order_history(unmatched)[-1]
    assert last["status"] == "CANCELLED" and last["filled_quantity"] == 0


def test_a_ttl_order_is_cancelled_when_its_minutes_lapse():
    with PaperBroker(seed=5, frozen=True) as broker:
        kite = KiteConnect("ttl-key", access_token="ttl-token", root=broker.root)
        inst = option(kite)
        short = place(kite, inst, order_type="LIMIT", price=0.05, market_protection=None, validity="TTL",
                      validity_ttl=1)
        long = place(kite, inst, order_type="LIMIT", price=0.05, market_protection=None, validity="TTL",
                     validity_ttl=5)
        time.sleep(0.6)
        assert kite.order_history(short)[-1]["status"] == "OPEN"
        later = datetime.now(timezone.utc) + timedelta(seconds=70)
        broker.settings(now=later.isoformat())
        assert wait_for(lambda: kite.order_history(short)[-1]["status"] == "CANCELLED", 5)
        lapsed = kite.order_history(short)[-1]
        assert "TTL" in lapsed["status_message"] and lapsed["cancelled_quantity"] == inst["lot_size"]
        assert kite.order_history(long)[-1]["status"] == "OPEN"
