"""Kite's static-IP rule through the official client: with `allowed_ips` registered, placing, modifying and
cancelling orders from another address is refused (403 PermissionException naming the address); every
other endpoint and the ticker work from anywhere.

The broker listens on 127.0.0.1; a client bound to 127.0.0.2 is another source address on this machine.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from tests.support.paper_broker import from_source_ip, option, place

OTHER_IP = "127.0.0.2"


def far_limit(inst) -> dict:
    """A BUY limit far below the market: the order rests, so it can be modified and cancelled."""
    return dict(order_type="LIMIT", price=round(inst["last_price"] * 0.5 / 0.05) * 0.05, market_protection=None)


def test_order_requests_from_another_address_are_refused(broker, kite, api_key):
    broker.add_account(api_key, allowed_ips=["127.0.0.1", "::1"])
    elsewhere = from_source_ip(KiteConnect(api_key, access_token=kite.access_token, root=broker.root), OTHER_IP)
    inst = option(elsewhere)                      # market data from anywhere

    with pytest.raises(kex.PermissionException) as placing:
        place(elsewhere, inst, **far_limit(inst))
    assert placing.value.code == 403
    assert str(placing.value) == (f"Order placement is not allowed from IP {OTHER_IP}: it is not among the "
                                  f"static IPs registered for this app.")
    assert broker.orders(api_key) == [] and api_key not in broker.state()["orders_placed"]

    order_id = place(kite, inst, **far_limit(inst))   # from 127.0.0.1, a registered address
    with pytest.raises(kex.PermissionException, match=f"Order modification is not allowed from IP {OTHER_IP}"):
        elsewhere.modify_order("regular", order_id, price=round(far_limit(inst)["price"] - 1, 2))
    with pytest.raises(kex.PermissionException, match=f"Order cancellation is not allowed from IP {OTHER_IP}"):
        elsewhere.cancel_order("regular", order_id)

    # Everything but order requests works from the other address.
    assert [o["status"] for o in elsewhere.orders()] == ["OPEN"]
    assert elsewhere.order_history(order_id)[-1]["status"] == "OPEN"
    assert elsewhere.positions()["net"] == [] and elsewhere.trades() == []
    assert elsewhere.profile()["user_id"]

    kite.modify_order("regular", order_id, price=round(far_limit(inst)["price"] - 1, 2))
    kite.cancel_order("regular", order_id)
    assert kite.order_history(order_id)[-1]["status"] == "CANCELLED"


def test_clearing_allowed_ips_lets_any_address_place(broker, kite, api_key):
    broker.add_account(api_key, allowed_ips=["::1"])  # IPv6 only: an IPv4 client is another address
    inst = option(kite)
    with pytest.raises(kex.PermissionException, match="from IP 127.0.0.1"):
        place(kite, inst, **far_limit(inst))
    assert broker.add_account(api_key, allowed_ips=[])["allowed_ips"] == []
    elsewhere = from_source_ip(KiteConnect(api_key, access_token=kite.access_token, root=broker.root), OTHER_IP)
    assert place(elsewhere, inst, **far_limit(inst))
    assert len(broker.orders(api_key)) == 1


@pytest.mark.parametrize("allowed_ips, complaint", [
    (["10.0.0.1", "10.0.0.2", "10.0.0.3"], "at most 2"),
    (["10.0.0.300"], "does not appear to be an IPv4 or IPv6 address"),
    ("10.0.0.1", "must be a list"),
])
def test_allowed_ips_are_validated(broker, api_key, allowed_ips, complaint):
    response = requests.post(f"{broker.root}/_sim/accounts", json={"api_key": api_key, "allowed_ips": allowed_ips},
                             timeout=10)
    assert response.status_code == 400 and complaint in response.json()["error"]


def test_ticker_works_from_another_address(broker, kite, api_key):
    broker.add_account(api_key, allowed_ips=["127.0.0.1"])

    async def first_binary_frame() -> bytes:
        connector = aiohttp.TCPConnector(local_addr=(OTHER_IP, 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            url = f"{broker.ws_root}?api_key={api_key}&access_token={kite.access_token}"
            async with session.ws_connect(url) as ws:
                await ws.send_json({"a": "subscribe", "v": [256265]})
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY and len(message.data) > 1:
                        return message.data
        raise AssertionError("the ticker closed without a tick")

    # A thread of its own: other tests of the session may leave an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        frame = pool.submit(asyncio.run, asyncio.wait_for(first_binary_frame(), 10)).result(15)
    assert int.from_bytes(frame[:2], "big") >= 1       # a frame of packets, not a heartbeat
