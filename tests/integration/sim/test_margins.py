"""Funds and margins through the official client: what fills block and release, Kite's margin
calculators (a hedged iron condor's `final` far below its `initial`) and the RMS rejection."""
from __future__ import annotations

import re

import pytest
import requests
from kiteconnect import KiteConnect

from sim.harness import PaperBroker

from tests.support.paper_broker import option, place
from tests.support.waiting import wait_for

CASH = 1_000_000.0


def set_cash(broker, api_key: str, cash: float) -> None:
    requests.post(broker.root + "/_sim/accounts", json={"api_key": api_key, "cash": cash},
                  timeout=5).raise_for_status()


def nifty_chain(kite, broker):
    """ATM strike and {(strike, CE|PE): instrument} of the nearest NIFTY expiry."""
    options = [i for i in kite.instruments("NFO") if i["name"] == "NIFTY" and i["instrument_type"] in ("CE", "PE")]
    expiry = min(i["expiry"] for i in options)
    chain = {(i["strike"], i["instrument_type"]): i for i in options if i["expiry"] == expiry}
    atm = round(broker.market()["spot"]["NIFTY"] / 50) * 50
    return atm, chain


def basket_order(inst, side: str, lots: int = 1) -> dict:
    return dict(exchange="NFO", tradingsymbol=inst["tradingsymbol"], transaction_type=side, variety="regular",
                product="NRML", order_type="MARKET", quantity=lots * inst["lot_size"], price=0)


def test_a_bought_option_blocks_its_premium_until_sold(broker, kite):
    broker.set_market(frozen=True)
    before = kite.margins("equity")
    assert before["net"] == CASH and before["available"]["opening_balance"] == CASH
    assert before["utilised"]["option_premium"] == 0 and kite.margins()["equity"]["net"] == CASH

    inst = option(kite)
    bought = kite.order_history(place(kite, inst, quantity=2 * inst["lot_size"]))[-1]
    premium = bought["average_price"] * 2 * inst["lot_size"]
    held = kite.margins("equity")
    assert held["utilised"]["option_premium"] == pytest.approx(premium, abs=0.01)
    assert held["utilised"]["span"] == 0 and held["utilised"]["exposure"] == 0
    assert held["net"] == pytest.approx(CASH - premium, abs=0.01) == held["available"]["live_balance"]

    sold = kite.order_history(place(kite, inst, transaction_type="SELL", quantity=2 * inst["lot_size"]))[-1]
    realised = (sold["average_price"] - bought["average_price"]) * 2 * inst["lot_size"]
    after = kite.margins("equity")
    assert after["utilised"]["option_premium"] == 0
    assert after["utilised"]["m2m_realised"] == pytest.approx(-realised, abs=0.01)
    assert after["net"] == pytest.approx(CASH + realised, abs=0.01)


def test_a_sold_option_blocks_span_and_exposure(broker, kite):
    broker.set_market(frozen=True)
    atm, chain = nifty_chain(kite, broker)
    call = chain[(atm, "CE")]
    per_order = kite.order_margins([basket_order(call, "SELL")])[0]
    assert per_order["tradingsymbol"] == call["tradingsymbol"] and per_order["option_premium"] == 0
    assert per_order["total"] == pytest.approx(per_order["span"] + per_order["exposure"])
    assert 100_000 < per_order["total"] < 160_000   # roughly Kite's ₹1.2–1.5 lakh per NIFTY lot
    assert per_order["charges"]["brokerage"] == 20 and per_order["charges"]["transaction_tax"] > 0

    sold = kite.order_history(place(kite, call, transaction_type="SELL"))[-1]
    held = kite.margins("equity")["utilised"]
    credit = sold["average_price"] * call["lot_size"]
    assert held["span"] == pytest.approx(per_order["span"], rel=0.01)
    assert held["exposure"] == pytest.approx(per_order["exposure"], rel=0.01)
    assert held["option_premium"] == pytest.approx(-credit, abs=0.01)   # the premium collected is credited


def test_an_iron_condor_needs_far_less_final_than_initial_margin(broker, kite):
    broker.set_market(frozen=True)
    atm, chain = nifty_chain(kite, broker)
    legs = [(chain[(atm + 200, "CE")], "SELL"), (chain[(atm + 400, "CE")], "BUY"),
            (chain[(atm - 200, "PE")], "SELL"), (chain[(atm - 400, "PE")], "BUY")]
    condor = [basket_order(inst, side) for inst, side in legs]
    basket = kite.basket_order_margins(condor, consider_positions=True)
    initial, final = basket["initial"], basket["final"]
    assert [o["tradingsymbol"] for o in basket["orders"]] == [o["tradingsymbol"] for o in condor]
    assert initial["total"] == pytest.approx(sum(o["total"] for o in basket["orders"]), abs=0.05)
    assert final["total"] < 0.4 * initial["total"]
    assert final["option_premium"] < 0          # a net credit
    assert final["total"] == pytest.approx(final["span"] + final["exposure"] + final["option_premium"], abs=0.05)
    assert basket["charges"]["brokerage"] == 80

    compact = kite.basket_order_margins(condor, mode="compact")
    assert set(compact["final"]) == {"type", "tradingsymbol", "exchange", "total"}
    assert compact["final"]["total"] == pytest.approx(final["total"], abs=0.05)

    # Placed leg by leg (wings first), the account blocks about the basket's final, not its initial.
    for inst, side in (legs[1], legs[3], legs[0], legs[2]):
        assert kite.order_history(place(kite, inst, transaction_type=side))[-1]["status"] == "COMPLETE"
    used = CASH - kite.margins("equity")["net"]
    assert used == pytest.approx(final["total"], rel=0.05)


def test_an_open_order_blocks_margin_until_cancelled(broker, kite):
    broker.set_market(frozen=True)
    inst = option(kite)
    oid = place(kite, inst, order_type="LIMIT", price=1.0, market_protection=None)
    assert kite.order_history(oid)[-1]["status"] == "OPEN"
    assert kite.margins("equity")["utilised"]["option_premium"] == pytest.approx(inst["lot_size"] * 1.0)
    kite.cancel_order("regular", oid)
    assert kite.margins("equity")["net"] == CASH


def test_insufficient_funds_are_rejected_after_acceptance_with_kites_texts(broker, kite, api_key, ticker_for,
                                                                           postback_receiver):
    broker.set_market(frozen=True)
    set_cash(broker, api_key, 100_000)
    url, received = postback_receiver
    recorder = ticker_for(api_key)
    broker.settings(postback_url=url)
    try:
        atm, chain = nifty_chain(kite, broker)
        oid = place(kite, chain[(atm, "CE")], transaction_type="SELL", quantity=2 * chain[(atm, "CE")]["lot_size"])
        assert oid   # accepted with an order id; the verdict comes as an update
        assert wait_for(lambda: any(o["order_id"] == oid and o["status"] == "REJECTED" for o in recorder.orders), 5)
        assert wait_for(lambda: any(r["body"]["order_id"] == oid and r["body"]["status"] == "REJECTED"
                                    for r in received), 5)
    finally:
        broker.settings(postback_url=None)
    rejected = kite.order_history(oid)[-1]
    assert rejected["status"] == "REJECTED" and rejected["filled_quantity"] == 0
    message = re.fullmatch(r"Insufficient funds\. Required margin is (\d+\.\d\d) but available margin is "
                           r"100000\.00\. Check the orderbook for open orders\.", rejected["status_message"])
    assert message, rejected["status_message"]
    assert float(message.group(1)) > 200_000
    assert rejected["status_message_raw"] == (f"RMS:Margin Exceeds,Required:{message.group(1)}, Available:100000.00 "
                                              f"for entity account-{rejected['placed_by']} across exchange across "
                                              f"segment across product ")
    pushed = next(o for o in recorder.orders if o["order_id"] == oid and o["status"] == "REJECTED")
    assert pushed["status_message"] == rejected["status_message"]
    assert kite.positions()["net"] == [] and kite.margins("equity")["net"] == 100_000


def test_cash_flag_sets_every_accounts_opening_funds():
    with PaperBroker(seed=4, cash=2_500_000, accounts={"registered": ("s", "t")}) as broker:
        for key in ("registered", "first-seen"):
            funds = KiteConnect(key, access_token="t", root=broker.root).margins("equity")
            assert funds["net"] == 2_500_000 and funds["available"]["opening_balance"] == 2_500_000


def test_account_cash_is_validated(broker, api_key):
    for bad in ("-1", '"lots"', "true", "1e999"):
        answer = requests.post(broker.root + "/_sim/accounts", data=f'{{"api_key": "{api_key}", "cash": {bad}}}',
                               headers={"Content-Type": "application/json"}, timeout=5)
        assert answer.status_code == 400 and "cash" in answer.json()["error"], bad


@pytest.mark.parametrize("body", ["[" * 5000 + "]" * 5000, "[1, 2]", '{"orders": []}', "[]", "not json",
                                  '[{"exchange": "NFO", "tradingsymbol": "X", "transaction_type": "SELL"}]'])
def test_margin_calculators_answer_bad_bodies_with_input_exceptions(broker, api_key, body):
    for path in ("/margins/orders", "/margins/basket"):
        answer = requests.post(broker.root + path, data=body, timeout=5,
                               headers={"Authorization": f"token {api_key}:t", "Content-Type": "application/json"})
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error_type"] == "InputException"


def test_margin_calculators_refuse_absurd_quantities(broker, kite):
    inst = option(kite)
    for quantity in ("Infinity", "1e400", "NaN", "-65"):
        answer = requests.post(broker.root + "/margins/orders", timeout=5,
                               data=f'[{{"exchange": "NFO", "tradingsymbol": "{inst["tradingsymbol"]}", '
                                    f'"transaction_type": "SELL", "quantity": {quantity}}}]',
                               headers={"Authorization": f"token {kite.api_key}:t",
                                        "Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error_type"] == "InputException", (quantity, answer.text)
