"""The paper broker with `--universe fno`: per-instrument tick rates through the official KiteTicker,
and stock derivatives through KiteConnect (margins, freeze quantity)."""
from __future__ import annotations

import csv
import io
import time
import uuid
from collections import Counter

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect.exceptions import InputException

from sim.harness import PaperBroker
from tests.support.paper_broker import TickerRecorder
from tests.support.waiting import wait_for

RATE = 2.0   # --tick-rate: ticks/s per subscribed instrument, on average over the universe


@pytest.fixture(scope="module")
def fno_broker():
    with PaperBroker(seed=5, tick_rate=RATE, universe="fno", startup_timeout=60) as b:
        yield b


@pytest.fixture(scope="module")
def dump(fno_broker):
    text = requests.get(fno_broker.root + "/instruments", timeout=30).text
    return list(csv.DictReader(io.StringIO(text)))


def nifty_near_calls(dump):
    calls = [r for r in dump if r["name"] == "NIFTY" and r["instrument_type"] == "CE"]
    near = min(r["expiry"] for r in calls)
    return sorted((r for r in calls if r["expiry"] == near), key=lambda r: float(r["strike"]))


def test_state_reports_the_universe(fno_broker, dump):
    assert fno_broker.state()["universe"] == {"name": "fno", "instruments": len(dump)}
    assert 80_000 <= len(dump) <= 100_000


def test_near_the_money_options_tick_more_often_than_far_strikes(fno_broker, dump, start_ticker):
    spot = fno_broker.market()["spot"]["NIFTY"]
    chain = nifty_near_calls(dump)
    atm = sorted(chain, key=lambda r: abs(float(r["strike"]) - spot))[:5]
    far = chain[:5] + chain[-5:]
    future = min((r for r in dump if r["name"] == "NIFTY" and r["instrument_type"] == "FUT"),
                 key=lambda r: r["expiry"])
    tokens = [int(r["instrument_token"]) for r in atm + far + [future]] + [256265]
    weights = {int(t): v["tick_weight"] for t, v in fno_broker.market(tokens)["instruments"].items()}

    key = "rates" + uuid.uuid4().hex[:6]
    recorder = start_ticker(TickerRecorder(key, "token" + key, fno_broker.ws_root))
    wait_for(lambda: recorder.connects >= 1, 10, 0.02, what="the ticker to connect")
    recorder.subscribe(tokens, "quote")
    time.sleep(1.5)   # the first tick of each (sent on subscribing) and the start-up staggering
    with recorder.lock:
        start = len(recorder.ticks)
    began = time.monotonic()
    time.sleep(4.0)
    with recorder.lock:
        window = recorder.ticks[start:]
    elapsed = time.monotonic() - began
    recorder.close()

    counts = Counter(t["instrument_token"] for t in window)
    rate = {t: counts[t] / elapsed for t in tokens}
    atm_rate = sum(rate[int(r["instrument_token"])] for r in atm) / len(atm)
    far_rate = sum(rate[int(r["instrument_token"])] for r in far) / len(far)
    assert atm_rate > 5 * far_rate, (atm_rate, far_rate, counts)
    # each instrument at tick_rate × its weight; the subscription's total at RATE × the weights' sum
    expected_total = RATE * sum(weights.values())
    assert len(window) / elapsed == pytest.approx(expected_total, rel=0.15), (len(window), elapsed, weights)
    for r in atm + [future]:
        token = int(r["instrument_token"])
        assert rate[token] == pytest.approx(RATE * weights[token], rel=0.3), (r["tradingsymbol"], counts[token])
    assert all(counts[int(r["instrument_token"])] >= 1 for r in far)   # far strikes still tick


def test_stock_derivatives_are_margined_and_frozen_like_index_ones(fno_broker, dump):
    kite = KiteConnect("stock" + uuid.uuid4().hex[:6], access_token="token", root=fno_broker.root)
    future = min((r for r in dump if r["name"] == "RELIANCE" and r["instrument_type"] == "FUT"),
                 key=lambda r: r["expiry"])
    lot = int(future["lot_size"])
    order = {"exchange": "NFO", "tradingsymbol": future["tradingsymbol"], "transaction_type": "SELL",
             "variety": "regular", "product": "NRML", "order_type": "MARKET", "quantity": lot}
    margin = kite.order_margins([order])[0]
    spot = fno_broker.market()["spot"]["RELIANCE"]
    assert margin["total"] == pytest.approx(0.12 * lot * spot, rel=0.05)   # scan range 10 % + exposure 2 %
    with pytest.raises(InputException, match=r"higher than the maximum quantity of %d \(20 lots\)" % (20 * lot)):
        kite.place_order(variety="regular", exchange="NFO", tradingsymbol=future["tradingsymbol"],
                         transaction_type="BUY", quantity=21 * lot, product="NRML", order_type="LIMIT",
                         price=float(future["last_price"]))
    # The market steps every 250 ms: the LTP is the spot of a step with no step between the two reads around it.
    for _ in range(10):
        before = fno_broker.market()["spot"]["RELIANCE"]
        equity = kite.ltp(["NSE:RELIANCE"])["NSE:RELIANCE"]
        if fno_broker.market()["spot"]["RELIANCE"] == before:
            break
    assert equity["last_price"] == pytest.approx(before, abs=0.1 + 1e-9)  # a tick of its price band at most
    assert fno_broker.set_market(spot={"RELIANCE": 1600.0})["spot"]["RELIANCE"] == pytest.approx(1600.0, abs=0.1)
    unknown = requests.post(fno_broker.root + "/_sim/market", json={"spot": {"NOSUCH": 1.0}}, timeout=5)
    assert unknown.status_code == 400
