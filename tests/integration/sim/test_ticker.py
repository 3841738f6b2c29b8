"""The official KiteTicker (threaded, one shared Twisted reactor) against the paper broker's /ws."""
from __future__ import annotations

import hashlib
import struct
import time

import pytest
from kiteconnect import KiteConnect

from sim.expiries import IST
from sim.harness import PaperBroker

from tests.support.paper_broker import TEST_SECRET, TickerRecorder
from tests.support.waiting import wait_for


def tokens_by_kind(kite):
    nfo = kite.instruments("NFO")
    future = next(i for i in nfo if i["segment"] == "NFO-FUT")
    options = [i for i in nfo if i["segment"] == "NFO-OPT" and i["last_price"] > 20]
    return future, options


def packet_count(frames: list[bytes]) -> int:
    return sum(struct.unpack(">H", f[:2])[0] for f in frames if len(f) > 4)


def test_ticks_decode_to_the_brokers_own_quotes(broker, kite, api_key, ticker_for):
    broker.set_market(frozen=True)
    future, options = tokens_by_kind(kite)
    opt_full, opt_quote = options[0], options[1]
    recorder = ticker_for(api_key)
    recorder.subscribe([256265, opt_full["instrument_token"]], "full")
    recorder.subscribe([260105, opt_quote["instrument_token"]], "quote")
    recorder.subscribe([future["instrument_token"]], "ltp")
    wanted = [(256265, "full"), (opt_full["instrument_token"], "full"), (260105, "quote"),
              (opt_quote["instrument_token"], "quote"), (future["instrument_token"], "ltp")]
    assert wait_for(lambda: all(recorder.latest(t, m) for t, m in wanted), 10,
                    what=lambda: f"a tick of each token in its mode; last ticks: {recorder.ticks[-5:]}")
    keys = {256265: "NSE:NIFTY 50", 260105: "NSE:NIFTY BANK",
            future["instrument_token"]: f"NFO:{future['tradingsymbol']}",
            opt_full["instrument_token"]: f"NFO:{opt_full['tradingsymbol']}",
            opt_quote["instrument_token"]: f"NFO:{opt_quote['tradingsymbol']}"}
    quotes = kite.quote(*keys.values())
    for token, mode in wanted:
        tick, q = recorder.latest(token, mode), quotes[keys[token]]
        assert tick["last_price"] == pytest.approx(q["last_price"]), (token, mode)
        assert tick["tradable"] is (token not in (256265, 260105))
        if mode == "ltp":
            assert set(tick) == {"tradable", "mode", "instrument_token", "last_price"}
            continue
        assert tick["ohlc"] == pytest.approx(q["ohlc"])
        assert tick["change"] == pytest.approx((q["last_price"] - q["ohlc"]["close"]) * 100 / q["ohlc"]["close"])
        if token in (256265, 260105):
            assert "volume_traded" not in tick
            assert ("exchange_timestamp" in tick) is (mode == "full")
            continue
        assert tick["volume_traded"] == q["volume"]
        assert tick["total_buy_quantity"] == q["buy_quantity"] and tick["total_sell_quantity"] == q["sell_quantity"]
        assert tick["average_traded_price"] == pytest.approx(q["average_price"], abs=0.01)
        assert tick["last_traded_quantity"] == q["last_quantity"]
        if mode == "full":
            assert tick["oi"] == q["oi"] and tick["oi_day_high"] == q["oi_day_high"]
            # ticks carry epoch seconds (naive local time in the client), REST carries IST wall time
            assert tick["last_trade_time"].timestamp() == q["last_trade_time"].replace(tzinfo=IST).timestamp()
            for side in ("buy", "sell"):
                assert [(d["price"], d["quantity"], d["orders"]) for d in tick["depth"][side]] == \
                    [(pytest.approx(d["price"]), d["quantity"], d["orders"]) for d in q["depth"][side]]
    state = broker.state()["ticker"]
    assert state["subscriptions"][api_key] == [5] and state["ticks_sent"] > 0


def test_order_updates_arrive_on_the_ticker_of_that_key_only(broker, kite, api_key, ticker_for):
    mine = ticker_for(api_key)
    stranger = ticker_for(api_key + "other")
    _, options = tokens_by_kind(kite)
    oid = kite.place_order("regular", exchange="NFO", tradingsymbol=options[0]["tradingsymbol"],
                           transaction_type="BUY", quantity=options[0]["lot_size"], product="NRML",
                           order_type="MARKET", market_protection=-1)
    assert wait_for(lambda: any(o["status"] == "COMPLETE" for o in mine.orders), 5)
    statuses = [o["status"] for o in mine.orders]
    assert statuses == ["OPEN", "COMPLETE"]
    done = mine.orders[-1]
    assert done["order_id"] == oid and done["filled_quantity"] == options[0]["lot_size"]
    assert done["unfilled_quantity"] == 0 and done["user_id"]
    assert done["checksum"] == hashlib.sha256((oid + done["order_timestamp"] + TEST_SECRET).encode()).hexdigest()
    time.sleep(0.3)
    assert stranger.orders == []


def test_tick_rate_heartbeats_pause_and_silence(broker, kite, api_key, ticker_for):
    _, options = tokens_by_kind(kite)
    tokens = [o["instrument_token"] for o in options[:20]]
    recorder = ticker_for(api_key, raw=True)
    recorder.subscribe(tokens, "ltp")
    assert wait_for(lambda: packet_count(recorder.frames) >= 20, 5)
    start, before = time.monotonic(), packet_count(recorder.frames)
    time.sleep(2.0)
    rate = (packet_count(recorder.frames) - before) / (time.monotonic() - start)
    assert 0.5 * 5 * 20 <= rate <= 1.5 * 5 * 20  # --tick-rate 5 per instrument, 20 instruments

    broker.set_faults(pause_ticks=True)
    time.sleep(0.3)
    recorder.frames.clear()
    time.sleep(2.3)
    assert recorder.frames and all(f == b"\x00" for f in recorder.frames)  # heartbeats only

    broker.set_faults(silence_ws=True)
    time.sleep(0.3)
    recorder.frames.clear()
    time.sleep(1.8)
    assert recorder.frames == []

    broker.clear_faults()
    assert wait_for(lambda: packet_count(recorder.frames) > 0, 5)


def test_drop_ws_makes_the_client_reconnect(broker, api_key, ticker_for):
    recorder = ticker_for(api_key)
    recorder.on_connect_subscribe = ("ltp", [256265])
    recorder.subscribe([256265], "ltp")
    broker.set_faults(drop_ws=True)
    assert wait_for(lambda: recorder.closes, 5)
    assert wait_for(lambda: recorder.connects >= 2, 10)
    recorder.ticks.clear()
    assert wait_for(lambda: recorder.latest(256265, "ltp"), 5)  # subscribed again after the reconnect
    state = broker.state()
    assert state["faults_consumed"]["drop_ws"] == 1 and state["faults"]["drop_ws"] is False
    assert state["ticker"]["dropped"] >= 1


def test_three_connections_per_key_and_refused_handshakes(broker, api_key, ticker_for):
    first = [ticker_for(api_key) for _ in range(3)]
    fourth = ticker_for(api_key, wait=False)
    assert wait_for(lambda: any("429" in str(e) for e in fourth.errors), 5,
                    what=lambda: f"a 429 for the fourth socket; errors: {fourth.errors}")
    assert fourth.connects == 0 and all(r.connects == 1 for r in first)
    fourth.close()

    broker.set_faults(refuse_ws_next=1)
    refused = ticker_for(api_key + "r", wait=False)
    assert wait_for(lambda: any("403" in str(e) for e in refused.errors), 5,
                    what=lambda: f"a 403 for the refused socket; errors: {refused.errors}")
    assert wait_for(lambda: refused.connects == 1, 10)  # the client's retry gets in
    assert broker.state()["faults_consumed"]["refuse_ws_next"] == 1


def test_subscription_cap_and_strict_handshake(start_ticker):
    with PaperBroker(seed=5, strict_auth=True, accounts={"capkey": ("s", "goodtoken")},
                     extra_args=["--strikes-each-side", "200"]) as b:
        kite = KiteConnect("capkey", access_token="goodtoken", root=b.root)
        tokens = [i["instrument_token"] for i in kite.instruments()]
        assert len(tokens) > 3000
        good = start_ticker(TickerRecorder("capkey", "goodtoken", b.ws_root))
        bad = start_ticker(TickerRecorder("capkey", "badtoken", b.ws_root))
        assert wait_for(lambda: good.connects == 1, 10)
        assert wait_for(lambda: any("403" in str(e) for e in bad.errors), 5)
        bad.close()
        good.subscribe(tokens, "ltp")
        assert wait_for(lambda: any(code == 0 and "3000" in str(msg) for code, msg in good.errors), 5,
                        what=lambda: f"the 3000-instrument limit error; errors: {good.errors}")
        assert wait_for(lambda: b.state()["ticker"]["subscriptions"].get("capkey") == [3000], 5)
        good.close()
