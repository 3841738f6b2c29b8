"""REST fault injection and HTTP postbacks (WebSocket faults are in test_ticker.py)."""
from __future__ import annotations

import hashlib
import time

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from tests.support.waiting import wait_for
from tests.support.paper_broker import option, place


def test_postback_checksum_verifies(broker, kite, api_key, postback_receiver):
    url, received = postback_receiver
    broker.settings(postback_url=url)
    try:
        secret = "per-account-secret"
        broker.add_account(api_key, api_secret=secret)
        oid = place(kite, option(kite))
        assert wait_for(lambda: any(r["body"]["status"] == "COMPLETE" for r in received), 5)
    finally:
        broker.settings(postback_url=None)
    bodies = [r["body"] for r in received if r["body"]["order_id"] == oid]
    assert [b["status"] for b in bodies] == ["OPEN", "COMPLETE"]
    assert all(r["content_type"] == "application/json" for r in received)
    for body in bodies:
        expected = hashlib.sha256((body["order_id"] + body["order_timestamp"] + secret).encode()).hexdigest()
        assert body["checksum"] == expected and len(body["order_timestamp"]) == 19
        assert body["user_id"] and "unfilled_quantity" in body
    assert broker.state()["postbacks"]["sent"] >= 2


def test_latency_and_jitter(broker, kite):
    kite.profile()
    broker.set_faults(latency_ms=300, jitter_ms=100)
    start = time.monotonic()
    kite.profile()
    assert 0.3 <= time.monotonic() - start < 1.5
    broker.clear_faults()
    start = time.monotonic()
    kite.profile()
    assert time.monotonic() - start < 0.3


def test_reject_next_and_reject_symbols(broker, kite):
    inst = option(kite)
    other = option(kite, kind="PE")
    broker.set_faults(reject_next=1, reject_symbols=[other["tradingsymbol"]])
    rejected = place(kite, inst)
    accepted = place(kite, inst)
    blocked = place(kite, other)
    history = kite.order_history(rejected)
    assert [h["status"] for h in history] == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "REJECTED"]
    assert history[-1]["status_message"]
    assert kite.order_history(accepted)[-1]["status"] == "COMPLETE"
    assert kite.order_history(blocked)[-1]["status"] == "REJECTED"
    consumed = broker.state()["faults_consumed"]
    assert consumed["reject_next"] == 1 and consumed["reject_symbols"] >= 1
    assert [p["quantity"] for p in kite.positions()["net"]] == [inst["lot_size"]]


@pytest.mark.parametrize("status, exception", [(503, kex.NetworkException), (429, kex.NetworkException),
                                               (500, kex.GeneralException)])
def test_error_next(broker, kite, status, exception):
    broker.set_faults(error_next=2, error_status=status)
    for _ in range(2):
        with pytest.raises(exception) as err:
            kite.orders()
        assert err.value.code == status
    assert kite.orders() == []
    assert broker.state()["faults"]["error_next"] == 0


def test_error_rate(broker, kite, api_key):
    broker.set_faults(error_rate=1.0)
    with pytest.raises(kex.NetworkException):
        kite.positions()
    broker.set_faults(error_rate=0.5)
    outcomes = []
    for n in range(40):
        try:
            KiteConnect(f"{api_key}{n}", access_token="t", root=broker.root).profile()
            outcomes.append(True)
        except kex.NetworkException:
            outcomes.append(False)
    assert 5 <= outcomes.count(False) <= 35
    broker.clear_faults()
    assert kite.positions() == {"net": [], "day": []}


def test_accept_then_timeout_creates_the_order_but_times_out(broker, api_key):
    kite = KiteConnect(api_key, access_token="t", root=broker.root, timeout=1)
    inst = option(kite)
    broker.set_faults(accept_then_timeout_next=1, timeout_s=2)
    with pytest.raises(requests.exceptions.ReadTimeout):
        place(kite, inst, tag="dup-check")
    held = broker.orders(api_key)
    assert len(held) == 1 and held[0]["tag"] == "dup-check" and held[0]["status"] == "COMPLETE"
    assert [o["order_id"] for o in kite.orders()] == [held[0]["order_id"]]  # reconcile by tag works
    second = place(kite, inst)
    assert second != held[0]["order_id"]


def test_fill_delay(broker, kite):
    broker.set_faults(fill_delay_ms=400)
    oid = place(kite, option(kite))
    assert kite.order_history(oid)[-1]["status"] == "OPEN"
    assert wait_for(lambda: kite.order_history(oid)[-1]["status"] == "COMPLETE", 3, 0.2)


def test_a_delayed_fill_waits_out_its_delay_while_the_market_moves():
    """Market steps match resting orders; one waiting for its fill delay is not filled early by them
    (a kill-switch test's buy-back filled at once in a full run, when an earlier test left the market moving).
    On a broker of its own: it moves the market."""
    from sim.harness import PaperBroker

    with PaperBroker(seed=13, rate_limits=False) as broker:  # it polls order_history
        kite = KiteConnect("delay-key", access_token="delay-token", root=broker.root)
        broker.set_faults(fill_delay_ms=1500)
        inst = option(kite)
        oid = place(kite, inst)
        placed_at = time.monotonic()
        for _ in range(3):  # three steps of a moving market: fresh books each time
            spot = broker.market()["spot"][inst["name"]]
            broker.set_market(spot={inst["name"]: spot * 1.001}, steps=1)
        assert kite.order_history(oid)[-1]["status"] == "OPEN"
        assert wait_for(lambda: kite.order_history(oid)[-1]["status"] == "COMPLETE", 5, 0.1)
        assert time.monotonic() - placed_at >= 1.4


def test_fault_endpoint_rejects_unknown_settings(broker):
    response = requests.post(broker.root + "/_sim/faults", json={"no_such_fault": 1}, timeout=5)
    assert response.status_code == 400
    assert requests.get(broker.root + "/no/such/route", timeout=5).json()["error_type"] == "GeneralException"


def test_faults_from_the_command_line():
    from sim.harness import PaperBroker
    with PaperBroker(seed=9, extra_args=["--reject-next", "1", "--latency-ms", "5"]) as b:
        faults = b.state()["faults"]
        assert faults["reject_next"] == 1 and faults["latency_ms"] == 5.0
        kite = KiteConnect("clikey", access_token="t", root=b.root)
        oid = place(kite, option(kite))
        assert kite.order_history(oid)[-1]["status"] == "REJECTED"
