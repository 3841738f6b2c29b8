"""Order placement, lifecycle, positions, validation, sessions and rate limits via the official client."""
from __future__ import annotations

import hashlib
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from sim.harness import PaperBroker
from tests.support.paper_broker import TEST_SECRET, option, place


def test_market_order_fills_at_the_touch_and_moves_positions(broker, kite):
    broker.set_market(frozen=True)
    inst = option(kite)
    ask = broker.market([inst["instrument_token"]])  # the broker's own view, not rate limited
    oid = place(kite, inst, quantity=2 * inst["lot_size"], tag="mkt1")
    assert isinstance(oid, str) and len(oid) == 19 and oid.isdigit()
    history = kite.order_history(oid)
    assert [h["status"] for h in history] == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING",
                                              "OPEN", "COMPLETE"]
    done = history[-1]
    assert done["filled_quantity"] == 2 * inst["lot_size"] and done["pending_quantity"] == 0
    assert done["tag"] == "mkt1" and done["tags"] == ["mkt1"]
    assert done["order_timestamp"].year >= 2026  # parsed to datetime by the client
    assert done["average_price"] > ask["instruments"][str(inst["instrument_token"])]["last_price"] - 0.001
    net = {p["tradingsymbol"]: p for p in kite.positions()["net"]}[inst["tradingsymbol"]]
    assert net["quantity"] == 2 * inst["lot_size"] and net["average_price"] == done["average_price"]
    trades = kite.trades()
    assert len(trades) == 1 and trades[0]["order_id"] == oid and trades[0]["quantity"] == 2 * inst["lot_size"]

    # Selling it back flattens the position and realises the spread.
    sell = place(kite, inst, transaction_type="SELL", quantity=2 * inst["lot_size"])
    sold = kite.order_history(sell)[-1]
    assert sold["status"] == "COMPLETE" and sold["average_price"] < done["average_price"]
    net = {p["tradingsymbol"]: p for p in kite.positions()["net"]}[inst["tradingsymbol"]]
    assert net["quantity"] == 0
    assert net["realised"] == pytest.approx((sold["average_price"] - done["average_price"]) * 2 * inst["lot_size"])
    assert [o["order_id"] for o in kite.orders()] == [oid, sell]


def test_limit_order_modify_and_cancel(broker, kite):
    inst = option(kite)
    far = round(inst["last_price"] * 0.5 / 0.05) * 0.05
    oid = place(kite, inst, order_type="LIMIT", price=far, market_protection=None)
    assert kite.order_history(oid)[-1]["status"] == "OPEN"
    kite.modify_order("regular", oid, price=round(far - 1, 2), quantity=3 * inst["lot_size"])
    current = kite.order_history(oid)[-1]
    assert current["status"] == "OPEN" and current["price"] == round(far - 1, 2)
    assert current["quantity"] == current["pending_quantity"] == 3 * inst["lot_size"] and current["modified"]
    kite.cancel_order("regular", oid)
    statuses = [h["status"] for h in kite.order_history(oid)]
    assert statuses[-2:] == ["CANCEL PENDING", "CANCELLED"] and "MODIFY PENDING" in statuses
    final = kite.orders()[-1]
    assert final["cancelled_quantity"] == 3 * inst["lot_size"] and final["status_message"] is None
    with pytest.raises(kex.InputException):
        kite.cancel_order("regular", oid)
    assert kite.positions()["net"] == []


def test_limit_fills_when_market_crosses_and_stop_loss_triggers(broker, kite):
    broker.set_market(frozen=True)
    inst = option(kite, kind="CE", min_price=50)
    spot = broker.market()["spot"]["NIFTY"]
    buy_limit = round(inst["last_price"] * 0.6 / 0.05) * 0.05
    limit_id = place(kite, inst, order_type="LIMIT", price=buy_limit, market_protection=None)
    trigger = round(inst["last_price"] * 0.7 / 0.05) * 0.05
    stop_id = place(kite, inst, transaction_type="SELL", order_type="SL-M", trigger_price=trigger)
    assert kite.order_history(limit_id)[-1]["status"] == "OPEN"
    assert kite.order_history(stop_id)[-1]["status"] == "TRIGGER PENDING"
    # The call loses value as NIFTY falls: the buy limit is crossed, the sell stop triggers.
    broker.set_market(spot={"NIFTY": spot - 400})
    filled = kite.order_history(limit_id)[-1]
    assert filled["status"] == "COMPLETE" and filled["average_price"] <= buy_limit
    stopped = [h["status"] for h in kite.order_history(stop_id)]
    assert stopped[-3:] == ["TRIGGER PENDING", "OPEN", "COMPLETE"]


def test_input_errors_are_input_exceptions(broker, kite, api_key):
    inst = option(kite)
    cases = [
        dict(quantity=inst["lot_size"] + 1),                                        # not a lot multiple
        dict(order_type="LIMIT", price=inst["last_price"] + 0.01, market_protection=None),  # off tick
        dict(order_type="LIMIT", price=None, market_protection=None),               # LIMIT without price
        dict(order_type="SL", price=10.0, trigger_price=None),                      # SL without trigger
        dict(market_protection=0),                                                  # MARKET without protection
        dict(market_protection=None),
        dict(order_type="SL-M", trigger_price=10.0, market_protection=None),
        dict(tag="x" * 21),
        dict(tradingsymbol="NIFTY99JAN1CE"),
        dict(product="CNC"),
    ]
    for n, case in enumerate(cases):
        with pytest.raises(kex.InputException) as err:
            # a key per call: rejected calls count against Kite's 10 order calls/s too
            place(KiteConnect(f"{api_key}{n}", access_token="t", root=broker.root), inst, **case)
        assert err.value.code == 400, case
    assert all(broker.orders(f"{api_key}{n}") == [] for n in range(len(cases)))  # nothing reached the book
    other = KiteConnect(api_key + "m", access_token="t", root=broker.root)
    assert "market protection" in str(_error(other, inst, market_protection=0)).lower()
    assert "lot size" in str(_error(other, inst, quantity=1)).lower()


def _error(kite, inst, **kw):
    try:
        place(kite, inst, **kw)
    except kex.InputException as exc:
        return exc
    raise AssertionError("no error")


def test_session_token_checksum_and_strict_auth():
    with PaperBroker(seed=3, strict_auth=True, accounts={"strictkey": ("s3cret", "presettoken")}) as b:
        kite = KiteConnect("strictkey", root=b.root)
        # Strict: only request tokens from the login page are exchanged.
        with pytest.raises(kex.TokenException, match="not issued by the login page"):
            kite.generate_session("reqtoken1", api_secret="s3cret")
        b.add_account("strictkey", redirect_url="http://127.0.0.1:9/callback")
        request_token = parse_qs(urlsplit(b.login("strictkey")).query)["request_token"][0]
        session = kite.generate_session(request_token, api_secret="s3cret")
        assert session["access_token"] and session["login_time"].year >= 2026 and session["user_id"]
        assert kite.profile()["user_id"] == session["user_id"]   # the client stored the token
        with pytest.raises(kex.TokenException) as err:
            KiteConnect("strictkey", root=b.root).generate_session("reqtoken2", api_secret="wrong")
        assert err.value.code == 403
        with pytest.raises(kex.TokenException):
            KiteConnect("strictkey", access_token="madeup", root=b.root).positions()
        assert KiteConnect("strictkey", access_token="presettoken", root=b.root).orders() == []
        # The default secret applies to keys nobody registered.
        other = KiteConnect("otherkey", root=b.root)
        with pytest.raises(kex.TokenException):
            other.generate_session("rt", api_secret="s3cret")
        kite.invalidate_access_token()
        with pytest.raises(kex.TokenException):
            kite.profile()
    assert hashlib.sha256(b"key1rtsecret").hexdigest().startswith("46a91462")  # Kite's published vector


def test_lenient_auth_still_needs_a_token(broker, api_key):
    with pytest.raises(kex.TokenException) as err:
        KiteConnect(api_key, root=broker.root).orders()
    assert err.value.code == 403
    session = KiteConnect(api_key, root=broker.root).generate_session(
        "rt", api_secret=TEST_SECRET)  # --api-secret of the session broker
    assert len(session["access_token"]) == 32


def test_order_burst_beyond_rate_limit_gets_429(broker, kite):
    inst = option(kite)
    far = round(inst["last_price"] * 0.5 / 0.05) * 0.05
    time.sleep(1 - time.time() % 1 + 0.01)  # start of a fresh one-second window
    outcomes = []
    for _ in range(14):
        try:
            outcomes.append(place(kite, inst, order_type="LIMIT", price=far, market_protection=None))
        except kex.NetworkException as exc:
            outcomes.append(exc)
    limited = [o for o in outcomes if isinstance(o, kex.NetworkException)]
    assert len(outcomes) - len(limited) == 10
    assert limited and all(e.code == 429 and str(e) == "Too many requests" for e in limited)
    assert broker.state()["rate_limited"] >= len(limited)


def test_placements_per_minute_limit():
    with PaperBroker(seed=2, extra_args=["--orders-per-minute", "3", "--orders-per-second", "100"]) as b:
        kite = KiteConnect("minutekey", access_token="t", root=b.root)
        inst = option(kite)
        for _ in range(3):
            place(kite, inst)
        with pytest.raises(kex.NetworkException) as err:
            place(kite, inst)
        assert err.value.code == 429
        assert len(b.orders("minutekey")) == 3


def test_quote_rate_limit(kite):
    kite.ltp("NSE:NIFTY 50")
    with pytest.raises(kex.NetworkException) as err:
        kite.quote("NSE:NIFTY 50")
    assert err.value.code == 429


def test_sim_orders_lists_every_order_of_a_key(broker, kite, api_key):
    inst = option(kite)
    oid = place(kite, inst)
    listed = broker.orders(api_key)
    assert [o["order_id"] for o in listed] == [oid] and listed[0]["status"] == "COMPLETE"
    assert broker.state()["orders_placed"][api_key] == 1
