"""GTT (good till triggered) orders through the official client: place, list, modify, delete, validation,
and triggers firing when the market crosses them.

The firing tests move the market, so every test here runs on a frozen paper broker of this module's own
(prices move only when a test moves the spot); rate limits are off there so a test's burst of calls is
never refused.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from tests.support.paper_broker import option, place
from tests.support.processes import PaperBroker

# The keys of a GTT, of its condition and of its orders in Zerodha's mocks (gtt_get_orders.json).
GTT_KEYS = {"id", "user_id", "parent_trigger", "type", "created_at", "updated_at", "expires_at", "status",
            "condition", "orders", "meta"}
CONDITION_KEYS = {"exchange", "last_price", "tradingsymbol", "trigger_values", "instrument_token"}
ORDER_KEYS = {"exchange", "tradingsymbol", "product", "order_type", "transaction_type", "quantity", "price", "result"}
RESULT_KEYS = {"account_id", "exchange", "tradingsymbol", "validity", "product", "order_type", "transaction_type",
               "quantity", "price", "meta", "timestamp", "triggered_at", "order_result"}


@pytest.fixture(scope="module")
def gtt_broker():
    with PaperBroker(seed=21, frozen=True, rate_limits=False) as b:
        yield b


@pytest.fixture
def kite(gtt_broker):
    return KiteConnect(f"gtt{uuid.uuid4().hex[:8]}", access_token="token", root=gtt_broker.root)


def tick(price: float) -> float:
    return round(round(price / 0.05) * 0.05, 2)


def leg(inst, side: str, price: float, **kw) -> dict:
    return {"transaction_type": side, "quantity": inst["lot_size"], "order_type": "LIMIT", "product": "NRML",
            "price": price, **kw}


def last_price(broker, inst) -> float:
    token = inst["instrument_token"]
    return broker.market([token])["instruments"][str(token)]["last_price"]


def move_nifty(broker, fraction: float) -> None:
    """Jump NIFTY by a fraction of its spot; the broker matches and checks GTTs before answering."""
    spot = broker.market()["spot"]["NIFTY"]
    broker.set_market(spot={"NIFTY": round(spot * (1 + fraction), 2)})


def place_single(kite, inst, trigger: float, last: float, side="BUY", price=None) -> int:
    return kite.place_gtt("single", inst["tradingsymbol"], "NFO", [trigger], last,
                          [leg(inst, side, price or trigger)])["trigger_id"]


# ---- the book ---------------------------------------------------------------------------------
def test_place_list_and_get_have_kites_shape(gtt_broker, kite):
    inst = option(kite, min_price=50)
    ltp = last_price(gtt_broker, inst)
    single = place_single(kite, inst, tick(ltp * 0.8), ltp)
    lower, upper = tick(ltp * 0.7), tick(ltp * 1.3)
    oco = kite.place_gtt("two-leg", inst["tradingsymbol"], "NFO", [lower, upper], ltp,
                         [leg(inst, "SELL", tick(lower - 1)), leg(inst, "SELL", upper)])["trigger_id"]
    assert isinstance(single, int) and isinstance(oco, int) and oco != single

    listed = kite.get_gtts()
    assert [g["id"] for g in listed] == [oco, single]   # newest first, as Kite lists them
    user_id = kite.profile()["user_id"]
    for g in listed:
        assert set(g) == GTT_KEYS and set(g["condition"]) == CONDITION_KEYS
        assert all(set(o) == ORDER_KEYS and o["result"] is None for o in g["orders"])
        assert g["status"] == "active" and g["user_id"] == user_id and g["parent_trigger"] is None
        assert g["condition"]["instrument_token"] == inst["instrument_token"]
        created = datetime.strptime(g["created_at"], "%Y-%m-%d %H:%M:%S")
        assert g["expires_at"] == created.replace(year=created.year + 1).strftime("%Y-%m-%d %H:%M:%S")
    got = kite.get_gtt(oco)
    assert got == listed[0]
    assert got["type"] == "two-leg" and got["condition"]["trigger_values"] == [lower, upper]
    assert got["condition"]["last_price"] == ltp
    lot = inst["lot_size"]
    assert [(o["transaction_type"], o["price"], o["quantity"], o["order_type"], o["product"]) for o in got["orders"]] \
        == [("SELL", tick(lower - 1), lot, "LIMIT", "NRML"), ("SELL", upper, lot, "LIMIT", "NRML")]
    assert kite.get_gtt(single)["type"] == "single"
    assert kite.orders() == []   # a GTT is not an order until it fires


def test_modify_delete_and_who_sees_a_gtt(gtt_broker, kite):
    inst = option(kite, min_price=50)
    ltp = last_price(gtt_broker, inst)
    trigger_id = place_single(kite, inst, tick(ltp * 0.8), ltp)
    answer = kite.modify_gtt(trigger_id, "single", inst["tradingsymbol"], "NFO", [tick(ltp * 0.75)], ltp,
                             [leg(inst, "BUY", tick(ltp * 0.76), quantity=2 * inst["lot_size"])])
    assert answer == {"trigger_id": trigger_id}
    modified = kite.get_gtt(trigger_id)
    assert modified["status"] == "active" and modified["condition"]["trigger_values"] == [tick(ltp * 0.75)]
    assert modified["orders"][0]["price"] == tick(ltp * 0.76)
    assert modified["orders"][0]["quantity"] == 2 * inst["lot_size"]
    assert modified["updated_at"] >= modified["created_at"]

    # Another account neither lists nor reaches it.
    stranger = KiteConnect(f"other{uuid.uuid4().hex[:8]}", access_token="token", root=gtt_broker.root)
    assert stranger.get_gtts() == []
    with pytest.raises(kex.InputException):
        stranger.get_gtt(trigger_id)
    with pytest.raises(kex.InputException):
        stranger.delete_gtt(trigger_id)

    assert kite.delete_gtt(trigger_id) == {"trigger_id": trigger_id}
    deleted = kite.get_gtt(trigger_id)
    assert deleted["status"] == "deleted"
    assert [g["id"] for g in kite.get_gtts()] == [trigger_id]   # still listed (our choice), as deleted
    with pytest.raises(kex.InputException, match="cannot be modified as it is deleted"):
        kite.modify_gtt(trigger_id, "single", inst["tradingsymbol"], "NFO", [tick(ltp * 0.8)], ltp,
                        [leg(inst, "BUY", tick(ltp * 0.8))])
    with pytest.raises(kex.InputException, match="cannot be deleted as it is deleted"):
        kite.delete_gtt(trigger_id)
    with pytest.raises(kex.InputException, match="trigger_id"):
        kite.get_gtt(trigger_id + 10**9)
    # A deleted GTT never fires.
    move_nifty(gtt_broker, -0.05)
    assert kite.get_gtt(trigger_id)["status"] == "deleted" and kite.orders() == []


def test_invalid_gtts_are_input_exceptions(gtt_broker, kite):
    inst = option(kite, min_price=50)
    ltp = last_price(gtt_broker, inst)
    low, high = tick(ltp * 0.8), tick(ltp * 1.2)
    symbol = inst["tradingsymbol"]
    index = next(i for i in kite.instruments("NSE") if i["tradingsymbol"] == "NIFTY 50")

    def gtt(kind, values, last, orders, tradingsymbol=symbol, exchange="NFO"):
        return lambda: kite.place_gtt(kind, tradingsymbol, exchange, values, last, orders)

    def raw(**form):   # bypasses the client's own checks, to reach the broker's
        return lambda: kite._post("gtt.place", params=form)

    condition = '{"exchange": "NFO", "tradingsymbol": "%s", "trigger_values": %s, "last_price": %s}'
    one_order = '[{"exchange": "NFO", "tradingsymbol": "%s", "transaction_type": "BUY", "quantity": %d, ' \
                '"order_type": "LIMIT", "product": "NRML", "price": %s}]' % (symbol, inst["lot_size"], low)
    cases = [
        (gtt("two-leg", [high, low], ltp, [leg(inst, "SELL", low), leg(inst, "SELL", high)]),
         "lower trigger must be below the upper"),
        (gtt("two-leg", [tick(ltp * 1.1), high], ltp, [leg(inst, "SELL", low), leg(inst, "SELL", high)]),
         "last price must lie between"),
        (gtt("single", [ltp], ltp, [leg(inst, "BUY", ltp)]), "must differ from the last price"),
        (gtt("single", [low], ltp, [leg(inst, "BUY", low), leg(inst, "BUY", low)]), "exactly one order"),
        (gtt("two-leg", [low, high], ltp, [leg(inst, "SELL", low)]), "exactly two orders"),
        (gtt("single", [low], ltp, [leg(inst, "BUY", low, order_type="MARKET")]), "must be LIMIT"),
        (gtt("single", [low], ltp, [leg(inst, "BUY", low + 0.01)]), "Tick size"),
        (gtt("single", [low], ltp, [leg(inst, "BUY", low, quantity=inst["lot_size"] + 1)]), "lot size"),
        (gtt("single", [low], ltp, [leg(inst, "BUY", low, product="CNC")]), "not allowed for F&O"),
        (gtt("single", [100.0], 120.0, [leg(inst, "BUY", 100.0)], tradingsymbol="NIFTY99JAN1CE"),
         "not a known instrument"),
        (gtt("single", [tick(index["last_price"] * 0.9)], index["last_price"],
             [leg(inst, "BUY", low, quantity=1)], tradingsymbol="NIFTY 50", exchange="NSE"), "indices"),
        (raw(type="single", condition=condition % (symbol, f"[{low}, {high}]", ltp), orders=one_order),
         "exactly one trigger value"),
        (raw(type="two-leg", condition=condition % (symbol, f"[{low}]", ltp), orders=one_order),
         "exactly two trigger values"),
        (raw(type="oco", condition=condition % (symbol, f"[{low}]", ltp), orders=one_order), "Invalid `type`"),
        (raw(type="single", condition="{not json", orders=one_order), "Invalid `condition`"),
        (raw(type="single", condition=condition % (symbol, f"[{low}]", ltp), orders="{}"), "Invalid `orders`"),
    ]
    for call, fragment in cases:
        with pytest.raises(kex.InputException) as err:
            call()
        assert err.value.code == 400 and fragment in str(err.value), (fragment, str(err.value))
    assert kite.get_gtts() == []   # nothing was kept


def test_a_gtt_expires_a_year_after_it_was_placed(gtt_broker, kite):
    inst = option(kite, min_price=50)
    ltp = last_price(gtt_broker, inst)
    trigger_id = place_single(kite, inst, tick(ltp * 0.8), ltp)
    expires = datetime.strptime(kite.get_gtt(trigger_id)["expires_at"], "%Y-%m-%d %H:%M:%S")
    try:
        for moment, status in ((expires - timedelta(minutes=1), "active"), (expires, "expired")):
            gtt_broker.settings(now=moment.isoformat() + "+05:30")
            gtt_broker.set_market()   # a market step, where expiry is checked
            later = KiteConnect(kite.api_key, access_token=uuid.uuid4().hex, root=gtt_broker.root)  # a new day's token
            assert later.get_gtt(trigger_id)["status"] == status
        with pytest.raises(kex.InputException, match="as it is expired"):
            later.delete_gtt(trigger_id)
    finally:
        gtt_broker.settings(now=None)


# ---- firing -----------------------------------------------------------------------------------
def test_single_gtts_fire_when_the_price_crosses_from_the_side_of_last_price(gtt_broker, kite):
    inst = option(kite, kind="CE", min_price=50)
    ltp = last_price(gtt_broker, inst)
    below, above = tick(ltp * 0.8), tick(ltp * 1.25)
    on_fall = place_single(kite, inst, below, ltp)            # fires once the price falls to `below`
    on_rise = place_single(kite, inst, above, ltp, price=tick(above * 1.1))   # once it rises to `above`

    move_nifty(gtt_broker, +0.02)   # the call rises past `above`, far from `below`
    risen = last_price(gtt_broker, inst)
    assert risen >= above
    assert kite.get_gtt(on_fall)["status"] == "active"
    fired = kite.get_gtt(on_rise)
    assert fired["status"] == "triggered"
    result = fired["orders"][0]["result"]
    assert set(result) == RESULT_KEYS and result["triggered_at"] == risen
    assert result["order_result"]["status"] == "success" and result["order_result"]["rejection_reason"] == ""
    rise_order = result["order_result"]["order_id"]
    assert result["meta"] == '{"app_id":0,"gtt":%d}' % on_rise

    move_nifty(gtt_broker, -0.06)   # now it falls through `below`
    fallen = kite.get_gtt(on_fall)
    assert fallen["status"] == "triggered" and fallen["orders"][0]["result"]["triggered_at"] <= below
    fall_order = fallen["orders"][0]["result"]["order_result"]["order_id"]

    # The fired orders live like any other order: in the order book, placed as the GTT said.
    orders = {o["order_id"]: o for o in kite.orders()}
    assert set(orders) == {rise_order, fall_order}   # a triggered GTT never fires again
    for order_id, price in ((rise_order, tick(above * 1.1)), (fall_order, below)):
        o = orders[order_id]
        assert (o["variety"], o["order_type"], o["transaction_type"], o["price"], o["quantity"], o["product"]) \
            == ("regular", "LIMIT", "BUY", price, inst["lot_size"], "NRML")
        assert o["status"] == "COMPLETE"   # marketable limits: both fill at the touch
        assert kite.order_history(order_id)[0]["status"] == "PUT ORDER REQ RECEIVED"


def test_two_leg_gtt_fires_only_the_leg_whose_side_is_crossed(gtt_broker, kite):
    call, put = option(kite, kind="CE", min_price=50), option(kite, kind="PE", min_price=50)
    gtts = {}
    for inst in (call, put):
        place(kite, inst)   # a long position for the OCO to exit
        ltp = last_price(gtt_broker, inst)
        lower, upper = tick(ltp * 0.8), tick(ltp * 1.2)
        gtts[inst["tradingsymbol"]] = kite.place_gtt(
            "two-leg", inst["tradingsymbol"], "NFO", [lower, upper], ltp,
            [leg(inst, "SELL", tick(lower * 0.9)), leg(inst, "SELL", upper)])["trigger_id"]

    move_nifty(gtt_broker, +0.02)   # the call rises to its target; the put falls to its stop-loss
    target = kite.get_gtt(gtts[call["tradingsymbol"]])
    stop = kite.get_gtt(gtts[put["tradingsymbol"]])
    assert target["status"] == stop["status"] == "triggered"
    assert target["orders"][0]["result"] is None and target["orders"][1]["result"] is not None
    assert stop["orders"][0]["result"] is not None and stop["orders"][1]["result"] is None
    fired = {target["orders"][1]["result"]["order_result"]["order_id"]: (call, target["orders"][1]["price"]),
             stop["orders"][0]["result"]["order_result"]["order_id"]: (put, stop["orders"][0]["price"])}

    move_nifty(gtt_broker, -0.04)   # back through the other legs: one cancels the other, nothing more fires
    orders = {o["order_id"]: o for o in kite.orders()}
    assert len(orders) == 4 and set(fired) <= set(orders)
    for order_id, (inst, price) in fired.items():
        o = orders[order_id]
        assert (o["tradingsymbol"], o["transaction_type"], o["order_type"], o["price"]) \
            == (inst["tradingsymbol"], "SELL", "LIMIT", price)
        assert o["status"] in ("OPEN", "COMPLETE")
    assert {p["tradingsymbol"]: p["quantity"] for p in kite.positions()["net"]} \
        == {call["tradingsymbol"]: 0, put["tradingsymbol"]: 0}   # both exits filled


def test_a_fired_order_the_broker_refuses_is_recorded_as_failed(gtt_broker, kite):
    inst = option(kite, kind="CE", min_price=50)
    ltp = last_price(gtt_broker, inst)
    trigger_id = kite.place_gtt("single", inst["tradingsymbol"], "NFO", [tick(ltp * 0.8)], ltp,
                                [leg(inst, "BUY", tick(ltp * 0.8), quantity=2 * inst["lot_size"])])["trigger_id"]
    freeze = gtt_broker.settings()["freeze_quantities"]
    gtt_broker.settings(freeze_quantities={"NIFTY": inst["lot_size"]})   # one lot at most, from now on
    try:
        move_nifty(gtt_broker, -0.05)
    finally:
        gtt_broker.settings(freeze_quantities=freeze)
    fired = kite.get_gtt(trigger_id)
    assert fired["status"] == "triggered"
    outcome = fired["orders"][0]["result"]["order_result"]
    assert outcome["status"] == "failed" and outcome["order_id"] == ""
    assert "higher than the maximum quantity" in outcome["rejection_reason"]
    assert kite.orders() == []
