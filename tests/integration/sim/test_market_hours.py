"""Market hours (`--market-hours`): Kite's NSE session, 09:15-15:30 IST Monday-Friday, on the session clock.

Each test runs its own frozen paper broker, since market hours and the clock are broker-wide. Moving the
clock past 06:00 IST ends access tokens (as Kite's do), so a test takes a fresh token after each move
(`client`); the api key, and so the account, stays the same.
"""
from __future__ import annotations

import time
import uuid

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from tests.support.paper_broker import TickerRecorder, option, place
from tests.support.processes import PaperBroker
from tests.support.waiting import wait_for

CLOSED = "Markets are closed right now. Use GTT for placing long standing orders instead."
TUESDAY = "2026-12-01"     # a Monday-Friday date
WEDNESDAY = "2026-12-02"
SATURDAY = "2026-12-05"


def at(broker, day: str, hhmmss: str) -> None:
    broker.settings(now=f"{day}T{hhmmss}+05:30")


def client(broker, api_key: str) -> KiteConnect:
    """A session started at the current (session-clock) time for this api key's account."""
    return KiteConnect(api_key, access_token=uuid.uuid4().hex, root=broker.root)


def far_below(inst) -> float:
    return round(inst["last_price"] * 0.5 / 0.05) * 0.05


def statuses(kite, order_id) -> list[str]:
    return [h["status"] for h in kite.order_history(order_id)]


def test_outside_the_session_regular_orders_are_refused_with_kites_text():
    with PaperBroker(seed=31, frozen=True, rate_limits=False, extra_args=["--market-hours"]) as broker:
        for day, moment in ((TUESDAY, "09:14:59"), (TUESDAY, "15:30:00"), (SATURDAY, "11:00:00")):
            at(broker, day, moment)
            kite = client(broker, "hours")
            inst = option(kite)
            with pytest.raises(kex.InputException) as err:
                place(kite, inst)
            assert err.value.code == 400 and str(err.value) == CLOSED, (day, moment)
            assert broker.state()["market_open"] is False
        assert broker.orders("hours") == []   # refused before anything reached the book

        at(broker, TUESDAY, "09:15:00")
        kite = client(broker, "hours")
        assert broker.state()["market_open"] is True
        order_id = place(kite, option(kite))
        assert statuses(kite, order_id)[-1] == "COMPLETE"
        with pytest.raises(kex.InputException, match="only outside market hours"):   # our choice
            place(kite, option(kite), variety="amo")
        assert [o["order_id"] for o in broker.orders("hours")] == [order_id]


def test_amo_orders_wait_for_the_open_then_take_kites_usual_path(start_ticker):
    with PaperBroker(seed=32, frozen=True, rate_limits=False, extra_args=["--market-hours"]) as broker:
        at(broker, TUESDAY, "09:10:00")
        kite = client(broker, "amo")
        recorder = start_ticker(TickerRecorder("amo", kite.access_token, broker.ws_root))
        try:
            wait_for(lambda: recorder.connects >= 1, 10, what="the ticker to connect")
            inst = option(kite)
            resting = place(kite, inst, variety="amo", order_type="LIMIT", price=far_below(inst),
                            market_protection=None)
            marketable = place(kite, inst, variety="amo")
            cancelled = place(kite, inst, variety="amo")
            for order_id in (resting, marketable, cancelled):
                assert statuses(kite, order_id) == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "AMO REQ RECEIVED"]
            book = {o["order_id"]: o for o in kite.orders()}
            assert all(book[o]["variety"] == "amo" and book[o]["exchange_order_id"] is None for o in book)
            wait_for(lambda: {u["order_id"] for u in recorder.orders if u["status"] == "AMO REQ RECEIVED"}
                     == {resting, marketable, cancelled}, 5, what="AMO REQ RECEIVED pushed for each order")
            kite.cancel_order("amo", cancelled)
            assert statuses(kite, cancelled)[-2:] == ["CANCEL PENDING", "CANCELLED"]
            assert broker.state()["amo_waiting"] == 2
            assert kite.trades() == []

            at(broker, TUESDAY, "09:15:00")   # the next market step opens the session
            wait_for(lambda: statuses(kite, marketable)[-1] == "COMPLETE", 5, what="the AMO market order to fill")
            assert statuses(kite, marketable)[2:] == ["AMO REQ RECEIVED", "OPEN PENDING", "OPEN", "COMPLETE"]
            assert statuses(kite, resting)[2:] == ["AMO REQ RECEIVED", "OPEN PENDING", "OPEN"]
            assert kite.order_history(resting)[-1]["exchange_order_id"]   # at the exchange now
            assert statuses(kite, cancelled)[-1] == "CANCELLED"           # a cancelled one stays cancelled
            assert broker.state()["amo_waiting"] == 0
            wait_for(lambda: {u["order_id"] for u in recorder.orders if u["status"] == "OPEN"} >= {resting, marketable},
                     5, what="OPEN pushed for the released orders")
        finally:
            recorder.close()


def test_resting_orders_and_gtts_wait_while_the_market_is_closed():
    with PaperBroker(seed=33, frozen=True, rate_limits=False, extra_args=["--market-hours"]) as broker:
        at(broker, TUESDAY, "15:29:00")
        kite = client(broker, "closed")
        inst = option(kite, kind="CE", min_price=50)
        limit = round(inst["last_price"] * 0.8 / 0.05) * 0.05
        order_id = place(kite, inst, order_type="LIMIT", price=limit, market_protection=None)
        trigger_id = kite.place_gtt("single", inst["tradingsymbol"], "NFO", [limit], inst["last_price"],
                                    [dict(transaction_type="BUY", quantity=inst["lot_size"], order_type="LIMIT",
                                          product="NRML", price=limit)])["trigger_id"]
        assert statuses(kite, order_id)[-1] == "OPEN"

        at(broker, TUESDAY, "15:31:00")
        assert broker.state()["market_open"] is False
        spot = broker.market()["spot"]["NIFTY"]
        broker.set_market(spot={"NIFTY": spot * 0.95})   # both would trigger now, if the market were open
        time.sleep(1.0)   # a few market steps (every 250 ms) while closed
        assert statuses(kite, order_id)[-1] == "OPEN"
        assert kite.get_gtt(trigger_id)["status"] == "active"

        at(broker, WEDNESDAY, "09:15:00")
        kite = client(broker, "closed")   # the clock passed 06:00: yesterday's token has expired
        wait_for(lambda: statuses(kite, order_id)[-1] == "COMPLETE", 5, what="the resting order to fill at the open")
        fired = wait_for(lambda: kite.get_gtt(trigger_id), 5, until=lambda g: g["status"] == "triggered",
                         what="the GTT to fire at the open")
        gtt_order = fired["orders"][0]["result"]["order_result"]["order_id"]
        assert gtt_order in {o["order_id"] for o in kite.orders()}


def test_market_hours_are_off_by_default_and_switch_at_run_time():
    with PaperBroker(seed=34, frozen=True, rate_limits=False) as broker:
        at(broker, SATURDAY, "12:00:00")
        kite = client(broker, "switch")
        inst = option(kite)
        state = broker.state()
        assert state["market_hours"] is False and state["market_open"] is True
        assert statuses(kite, place(kite, inst))[-1] == "COMPLETE"   # the sandbox trades around the clock

        assert broker.settings(market_hours=True)["market_hours"] is True
        assert broker.state()["market_open"] is False
        with pytest.raises(kex.InputException, match="Markets are closed right now"):
            place(kite, inst)
        waiting = place(kite, inst, variety="amo")
        assert statuses(kite, waiting)[-1] == "AMO REQ RECEIVED"

        broker.settings(market_hours=False)   # off again: the waiting AMO goes out at the next step
        wait_for(lambda: statuses(kite, waiting)[-1] == "COMPLETE", 5, what="the AMO order to go out")
        assert broker.state()["market_open"] is True
        with pytest.raises(requests.HTTPError):
            broker.settings(market_hours="yes")
