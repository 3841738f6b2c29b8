"""Instruments, quotes and candles through the official client."""
from __future__ import annotations

import math
import re
import time
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from kiteconnect import exceptions as kex
from scipy.optimize import brentq

from sim import expiries
from sim.market import Market
from sim.pricing import black_scholes


def test_instruments_parse_with_dates_and_kite_columns(kite):
    everything = kite.instruments()
    nfo = kite.instruments("NFO")
    nse = kite.instruments("NSE")
    assert len(everything) == len(nfo) + len(nse)
    assert list(everything[0]) == ["instrument_token", "exchange_token", "tradingsymbol", "name", "last_price",
                                   "expiry", "strike", "tick_size", "lot_size", "instrument_type", "segment",
                                   "exchange"]
    indices = {i["tradingsymbol"]: i for i in nse}
    assert indices["NIFTY 50"]["instrument_token"] == 256265
    assert indices["NIFTY BANK"]["instrument_token"] == 260105
    assert {i["segment"] for i in nse} == {"INDICES"}
    today = expiries.today_ist()
    for inst in nfo:
        assert isinstance(inst["expiry"], date) and inst["expiry"] > today
        assert inst["instrument_token"] & 0xFF == 2
        assert inst["tick_size"] == 0.05
        assert inst["name"] in ("NIFTY", "BANKNIFTY")
        assert inst["lot_size"] == {"NIFTY": 65, "BANKNIFTY": 30}[inst["name"]]
        assert inst["last_price"] > 0
    futures = [i for i in nfo if i["segment"] == "NFO-FUT"]
    assert sorted(i["tradingsymbol"] for i in futures) == sorted(
        expiries.future_symbol(n, expiries.monthly_expiries_after(today, 1)[0]) for n in ("NIFTY", "BANKNIFTY"))
    options = [i for i in nfo if i["segment"] == "NFO-OPT"]
    nifty_expiries = sorted({i["expiry"] for i in options if i["name"] == "NIFTY"})
    bank_expiries = sorted({i["expiry"] for i in options if i["name"] == "BANKNIFTY"})
    assert len(nifty_expiries) == 3 and all(e.weekday() == 1 for e in nifty_expiries)
    assert bank_expiries == expiries.monthly_expiries_after(today, 1)
    for inst in options:
        step = 50 if inst["name"] == "NIFTY" else 100
        assert inst["strike"] % step == 0
        assert re.fullmatch(r"(NIFTY|BANKNIFTY)\d{2}([1-9OND]\d{2}|[A-Z]{3})\d+(CE|PE)", inst["tradingsymbol"])
        monthly = expiries.is_monthly_expiry(inst["expiry"])
        assert (inst["expiry"].strftime("%b").upper() in inst["tradingsymbol"]) == monthly
    per_expiry = [i for i in options if i["name"] == "NIFTY" and i["expiry"] == nifty_expiries[0]]
    assert len(per_expiry) == 81 * 2  # ±40 strikes around spot, calls and puts


def test_symbol_formats():
    assert expiries.option_symbol("NIFTY", date(2026, 12, 1), 24000, "CE") == "NIFTY26D0124000CE"
    assert expiries.option_symbol("NIFTY", date(2026, 12, 29), 24000, "CE") == "NIFTY26DEC24000CE"
    assert expiries.option_symbol("NIFTY", date(2026, 3, 10), 22550, "PE") == "NIFTY2631022550PE"
    assert expiries.future_symbol("BANKNIFTY", date(2026, 12, 29)) == "BANKNIFTY26DECFUT"
    assert expiries.weekly_expiries_after(date(2026, 11, 24), 2) == [date(2026, 12, 1), date(2026, 12, 8)]
    assert expiries.monthly_expiries_after(date(2026, 11, 24), 1) == [date(2026, 12, 29)]


def test_quote_has_five_level_depth_and_consistent_book(kite):
    nfo = kite.instruments("NFO")
    option = next(i for i in nfo if i["segment"] == "NFO-OPT" and i["last_price"] > 20)
    key = f"NFO:{option['tradingsymbol']}"
    q = kite.quote(key, "NSE:NIFTY 50", "NFO:NOSUCH")[key]
    assert set(q) >= {"instrument_token", "timestamp", "last_trade_time", "last_price", "last_quantity",
                      "buy_quantity", "sell_quantity", "volume", "average_price", "oi", "oi_day_high",
                      "oi_day_low", "net_change", "lower_circuit_limit", "upper_circuit_limit", "ohlc", "depth"}
    assert isinstance(q["timestamp"], datetime)
    bids, asks = q["depth"]["buy"], q["depth"]["sell"]
    assert len(bids) == len(asks) == 5
    assert all(b1["price"] > b2["price"] for b1, b2 in zip(bids, bids[1:]))
    assert all(a1["price"] < a2["price"] for a1, a2 in zip(asks, asks[1:]))
    assert bids[0]["price"] <= q["last_price"] <= asks[0]["price"]
    assert all(level["quantity"] % option["lot_size"] == 0 and level["quantity"] > 0 for level in bids + asks)
    assert q["oi"] > 0 and q["volume"] > 0


def test_ltp_and_ohlc(broker, api_key):
    from kiteconnect import KiteConnect
    kite = KiteConnect(api_key, access_token="t", root=broker.root)
    ltp = kite.ltp("NSE:NIFTY 50", "NSE:NIFTY BANK")
    assert ltp["NSE:NIFTY 50"]["instrument_token"] == 256265 and ltp["NSE:NIFTY BANK"]["last_price"] > 10000
    kite2 = KiteConnect(api_key + "b", access_token="t", root=broker.root)  # quotes are limited to 1/s per key
    ohlc = kite2.ohlc("NSE:NIFTY 50")["NSE:NIFTY 50"]
    assert ohlc["ohlc"]["low"] <= ohlc["last_price"] <= ohlc["ohlc"]["high"]


@pytest.mark.parametrize("interval", ["minute", "3minute", "5minute", "10minute", "15minute", "30minute",
                                      "60minute", "day"])
def test_historical_candles_with_oi(broker, api_key, interval):
    from kiteconnect import KiteConnect
    kite = KiteConnect(api_key, access_token="t", root=broker.root)
    future = next(i for i in kite.instruments("NFO") if i["segment"] == "NFO-FUT")
    end = datetime.combine(expiries.today_ist(), datetime.min.time()) - timedelta(seconds=1)  # yesterday 23:59:59
    start = end - timedelta(days=6)
    candles = kite.historical_data(future["instrument_token"], start, end, interval, oi=True)
    assert candles, interval
    step = {"minute": 1, "3minute": 3, "5minute": 5, "10minute": 10, "15minute": 15, "30minute": 30,
            "60minute": 60}.get(interval)
    for c in candles:
        assert c["date"].utcoffset() == timedelta(hours=5, minutes=30)
        assert c["low"] <= min(c["open"], c["close"]) <= max(c["open"], c["close"]) <= c["high"]
        assert c["volume"] > 0 and c["oi"] > 0
        assert c["date"].weekday() < 5
        if step:
            minutes = c["date"].hour * 60 + c["date"].minute - (9 * 60 + 15)
            assert 0 <= minutes < 375 and minutes % step == 0
    if interval == "day":
        assert all(c["date"].hour == 0 for c in candles)
    # The same call gives the same candles: history is deterministic.
    again = kite.historical_data(future["instrument_token"], start, end, interval, oi=True)
    assert again == candles


def test_historical_intervals_agree_and_errors(broker, api_key):
    from kiteconnect import KiteConnect
    kite = KiteConnect(api_key, access_token="t", root=broker.root)
    day = expiries.today_ist() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    minute = kite.historical_data(256265, day, day, "minute")
    hourly = kite.historical_data(256265, day, day, "60minute")
    daily = kite.historical_data(256265, day, day, "day")
    assert len(minute) == 375 and len(hourly) == 7 and len(daily) == 1
    assert "oi" not in minute[0]
    assert daily[0]["open"] == minute[0]["open"] and daily[0]["close"] == minute[-1]["close"]
    assert daily[0]["high"] == max(c["high"] for c in minute)
    # The last finished trading day closes at the quote's previous close.
    close = kite.ohlc("NSE:NIFTY 50")["NSE:NIFTY 50"]["ohlc"]["close"]
    assert abs(daily[0]["close"] - close) < 0.06
    other = KiteConnect(api_key + "x", access_token="t", root=broker.root)  # historical: 3 calls/s per key
    with pytest.raises(kex.InputException) as err:
        other.historical_data(256265, day - timedelta(days=90), day, "minute")
    assert err.value.code == 400


def test_same_seed_same_market_and_iv_recoverable():
    a, b = Market(seed=42), Market(seed=42)
    assert [i.tradingsymbol for i in a.instruments] == [i.tradingsymbol for i in b.instruments]
    now = time.time()
    for _ in range(5):
        a.step(now)
        b.step(now)
    assert np.array_equal(a.ltp, b.ltp) and np.array_equal(a.bid_qty, b.bid_qty)
    assert not np.array_equal(a.ltp, Market(seed=43).ltp)

    # Implied volatility solved from a price recovers the smile within the noise.
    smile = a.implied_vol(now)
    checked = 0
    for inst in a.instruments:
        i = inst.index
        if not a.is_option[i] or a.ltp[i] < 20:
            continue
        spot = float(a.spot[a.und[i]])
        years = (a.expiry_epoch[i] - now) / (365 * 86400)
        is_call = inst.instrument_type == "CE"
        vega = float(black_scholes(spot, inst.strike, years, a.rate, smile[i] + 0.01, is_call)
                     - black_scholes(spot, inst.strike, years, a.rate, smile[i], is_call)) / 0.01
        if vega * 0.005 < 0.05:  # tick rounding would move this one's IV by more than half a vol point
            continue
        iv = brentq(lambda v: float(black_scholes(spot, inst.strike, years, a.rate, v, is_call)) - a.ltp[i], 0.01, 3)
        assert math.isclose(iv, smile[i], abs_tol=0.02), (inst.tradingsymbol, iv, smile[i])
        checked += 1
    assert checked > 50
