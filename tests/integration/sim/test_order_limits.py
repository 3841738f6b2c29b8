"""Kite's 2026 order limits per account through the official client: 10 order requests/s ("Too many
requests"), 400 placements/min and 5,000/day ("Maximum allowed order requests exceeded"), rejected requests
counting too, and at most 25 modifications of one order.

The limits are broker-wide settings, so these tests run on a broker of this module's own and put its
limits back after each test. Windows are calendar seconds/minutes of the broker's clock (this machine's).
"""
from __future__ import annotations

import time

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from sim.harness import PaperBroker
from tests.support.paper_broker import from_source_ip, option, place

DEFAULTS = {"per_second": 10, "per_minute": 400, "per_day": 5000}
COUNT_EXCEEDED = "Maximum allowed order requests exceeded"


@pytest.fixture(scope="module")
def own_broker():
    with PaperBroker(seed=17) as b:
        yield b


@pytest.fixture
def limits_broker(own_broker):
    """The module's broker, with Kite's default order limits back after the test."""
    try:
        yield own_broker
    finally:
        own_broker.settings(order_limits=DEFAULTS)


@pytest.fixture
def kite(limits_broker, api_key):
    return KiteConnect(api_key, access_token="token" + api_key, root=limits_broker.root)


def resting(inst) -> dict:
    """A BUY limit far below the market: it rests, so it can be modified."""
    return dict(order_type="LIMIT", price=round(inst["last_price"] * 0.5 / 0.05) * 0.05, market_protection=None)


def fresh_window(seconds: int, needed: float) -> None:
    """Sleep into the next window of `seconds` unless `needed` seconds are left in this one."""
    left = seconds - time.time() % seconds
    if left < needed:
        time.sleep(left + 0.02)


def outcome(call):
    try:
        return call()
    except kex.KiteException as exc:
        return exc


def test_defaults_and_runtime_settings(own_broker):
    assert own_broker.settings()["order_limits"] == DEFAULTS      # 400/min is the 2026 figure
    try:
        assert own_broker.settings(order_limits={"per_minute": 7})["order_limits"] == {**DEFAULTS, "per_minute": 7}
        for bad in ({"per_minute": 0}, {"per_day": "5"}, {"per_second": True}, {"per_hour": 5}, [10]):
            response = requests.post(f"{own_broker.root}/_sim/settings", json={"order_limits": bad}, timeout=10)
            assert response.status_code == 400 and "order_limits" in response.json()["error"], bad
        assert own_broker.settings()["order_limits"] == {**DEFAULTS, "per_minute": 7}   # a bad value changes nothing
    finally:
        own_broker.settings(order_limits=DEFAULTS)


def test_more_than_the_per_second_limit_is_too_many_requests(limits_broker, kite):
    limits_broker.settings(order_limits={"per_second": 4})
    inst = option(kite)
    fresh_window(1, 0.8)
    outcomes = [outcome(lambda: place(kite, inst, **resting(inst))) for _ in range(6)]
    refused = [o for o in outcomes if isinstance(o, kex.NetworkException)]
    assert len(refused) == 2 and all(e.code == 429 and str(e) == "Too many requests" for e in refused), outcomes
    assert len(limits_broker.orders(kite.api_key)) == 4


def test_placements_past_the_minute_limit_are_refused_with_kites_message(limits_broker, kite):
    limits_broker.settings(order_limits={"per_minute": 3})
    inst = option(kite)
    fresh_window(60, 10)
    with pytest.raises(kex.InputException):
        place(kite, inst, quantity=1)               # invalid (not a lot multiple): counts all the same
    order_id = place(kite, inst, **resting(inst))
    place(kite, inst, **resting(inst))
    with pytest.raises(kex.NetworkException) as err:
        place(kite, inst, **resting(inst))
    assert err.value.code == 429 and str(err.value) == COUNT_EXCEEDED
    assert len(limits_broker.orders(kite.api_key)) == 2
    # Only placements count per minute: modifying and cancelling still work.
    kite.modify_order("regular", order_id, price=round(resting(inst)["price"] - 1, 2))
    kite.cancel_order("regular", order_id)


def test_placements_past_the_daily_limit_are_refused(limits_broker, kite):
    limits_broker.settings(order_limits={"per_day": 2})
    inst = option(kite)
    place(kite, inst, **resting(inst))
    place(kite, inst, **resting(inst))
    with pytest.raises(kex.NetworkException) as err:
        place(kite, inst, **resting(inst))
    assert err.value.code == 429 and str(err.value) == COUNT_EXCEEDED


def test_static_ip_refusals_count_towards_the_limits(limits_broker, kite, api_key):
    limits_broker.add_account(api_key, allowed_ips=["127.0.0.1"])
    limits_broker.settings(order_limits={"per_minute": 2})
    elsewhere = from_source_ip(KiteConnect(api_key, access_token=kite.access_token, root=limits_broker.root),
                               "127.0.0.2")
    inst = option(kite)
    fresh_window(60, 10)
    for _ in range(2):
        with pytest.raises(kex.PermissionException):
            place(elsewhere, inst, **resting(inst))
    with pytest.raises(kex.NetworkException, match=COUNT_EXCEEDED):
        place(kite, inst, **resting(inst))          # from the registered address, but the minute is used up
    assert limits_broker.orders(api_key) == []


def test_the_26th_modification_of_an_order_is_refused(limits_broker, kite):
    limits_broker.settings(order_limits={"per_second": 100})
    inst = option(kite)
    order_id = place(kite, inst, **resting(inst))
    base = resting(inst)["price"]
    for n in range(25):
        kite.modify_order("regular", order_id, price=round(base - 0.05 * (n % 2 + 1), 2))
    with pytest.raises(kex.InputException, match="Maximum allowed order modifications exceeded"):
        kite.modify_order("regular", order_id, price=round(base - 0.15, 2))
    assert kite.order_history(order_id)[-1]["status"] == "OPEN"
    kite.cancel_order("regular", order_id)          # an order at its modification limit can still be cancelled
