"""Orders under Kite's static-IP rule, through the service: an account's order requests leave from
its egress (a local source address, or a proxy on the account's IP), and the paper broker — told
that the account may trade only from 127.0.0.2 — accepts them; without the egress it refuses them
(403 PermissionException), and the service ends the order REJECTED with the broker's words, once.

The broker listens on 127.0.0.1; 127.0.0.2 is another source address of this machine (loopback:
nothing here leaves it).
"""
from __future__ import annotations

import secrets
import time

import pytest
import requests

from tests.support.forward_proxy import ForwardProxy
from tests.support.orders import market_order, resting_limit_order
from tests.support.waiting import wait_for

STATIC_IP = "127.0.0.2"
PROXY_USER, PROXY_PASSWORD = "trader", "s3cret-pw"


@pytest.fixture
def static_ip_account(client, headers, order_stack):
    """`make(egress)`: a service account of the test's own, registered through the API with
    `egress`, whose paper-broker account may send order requests from STATIC_IP only.
    Returns (account id, api key)."""

    def make(egress: dict | None) -> tuple[str, str]:
        suffix = secrets.token_hex(4)
        account_id = f"static-ip-{suffix}"
        creds = {"api_key": f"paper-static-{suffix}", "api_secret": f"secret-{suffix}",
                 "access_token": f"tok-{suffix}"}
        at_broker = requests.post(f"{order_stack.root}/_sim/accounts",
                                  json={**creds, "allowed_ips": [STATIC_IP]}, timeout=10)
        assert at_broker.status_code == 200 and at_broker.json()["allowed_ips"] == [STATIC_IP], at_broker.text
        created = client.post("/accounts", headers=headers["admin"],
                              json={"account_id": account_id, **creds, "egress": egress})
        assert created.status_code == 201, created.get_json()
        return account_id, creds["api_key"]

    return make


@pytest.fixture
def proxy():
    """A proxy host with the account's static IP: listens on 127.0.0.1, connects from STATIC_IP."""
    server = ForwardProxy(STATIC_IP, PROXY_USER, PROXY_PASSWORD).start()
    yield server
    server.stop()


def at_broker(orders, api_key: str, tag: str) -> list[dict]:
    return [o for o in orders.broker.orders(api_key) if o["tag"] == tag]


def errors_of(orders, order_id: str) -> list[str]:
    return [e["error"] for e in orders.get(order_id, role="admin").get_json()["events"] if e["error"]]


def change_egress(client, headers, account_id: str, egress: dict | None) -> dict:
    response = client.patch(f"/accounts/{account_id}", headers=headers["admin"], json={"egress": egress})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_orders_modifications_and_cancels_leave_from_the_source_address(
        orders, client, headers, option, future, static_ip_account):
    account_id, api_key = static_ip_account({"source_address": STATIC_IP})
    admin = headers["admin"]

    placed = orders.place(market_order(option), role="admin", account=account_id).get_json()
    record = orders.wait_status(placed["id"], "COMPLETE", role="admin")
    assert record["attempts"] == 1
    assert [o["order_id"] for o in at_broker(orders, api_key, placed["tag"])] == [record["broker_order_id"]]

    body = resting_limit_order(orders.broker, future)
    resting = orders.place(body, role="admin", account=account_id).get_json()
    orders.wait_status(resting["id"], "OPEN", role="admin")
    new_price = round(body["price"] - 10 * future.tick_size, 2)
    assert client.patch(f"/orders/{resting['id']}", json={"price": new_price}, headers=admin).status_code == 202
    wait_for(lambda: at_broker(orders, api_key, resting["tag"])[0]["price"] == new_price, 10,
             what="the modification at the broker")
    assert client.delete(f"/orders/{resting['id']}", headers=admin).status_code == 202
    orders.wait_status(resting["id"], "CANCELLED", role="admin")
    assert at_broker(orders, api_key, resting["tag"])[0]["status"] == "CANCELLED"
    assert errors_of(orders, resting["id"]) == []


def test_without_its_egress_orders_are_refused_once_and_a_new_egress_applies_at_once(
        orders, client, headers, option, future, static_ip_account):
    account_id, api_key = static_ip_account({"source_address": STATIC_IP})
    admin = headers["admin"]
    resting = orders.place(resting_limit_order(orders.broker, future), role="admin", account=account_id).get_json()
    orders.wait_status(resting["id"], "OPEN", role="admin")   # the worker now holds a client bound to STATIC_IP

    assert change_egress(client, headers, account_id, None)["egress"] is None
    # The worker's cached client is rebuilt at its next call: the cancel leaves from 127.0.0.1 and is refused.
    assert client.delete(f"/orders/{resting['id']}", headers=admin).status_code == 202
    refusal = ("PermissionException (403): Order cancellation is not allowed from IP 127.0.0.1: "
               "it is not among the static IPs registered for this app.")
    wait_for(lambda: f"cancel failed: {refusal}" in errors_of(orders, resting["id"]), 10,
             what="the broker's refusal of the cancel")
    assert orders.get(resting["id"], role="admin").get_json()["status"] == "OPEN"
    assert at_broker(orders, api_key, resting["tag"])[0]["status"] == "OPEN"

    placed = orders.place(market_order(option), role="admin", account=account_id).get_json()
    record = orders.wait_status(placed["id"], "REJECTED", role="admin")
    assert record["error"] == ("PermissionException (403): Order placement is not allowed from IP 127.0.0.1: "
                               "it is not among the static IPs registered for this app.")
    assert record["attempts"] == 1
    time.sleep(1.0)  # a final refusal: nothing retries it
    again = orders.get(placed["id"], role="admin").get_json()
    assert again["status"] == "REJECTED" and again["attempts"] == 1
    assert at_broker(orders, api_key, placed["tag"]) == []

    assert change_egress(client, headers, account_id, {"source_address": STATIC_IP})["egress"] == \
        {"source_address": STATIC_IP}
    assert client.delete(f"/orders/{resting['id']}", headers=admin).status_code == 202
    orders.wait_status(resting["id"], "CANCELLED", role="admin")


def test_every_order_call_goes_through_the_accounts_proxy(
        orders, client, headers, option, future, static_ip_account, proxy):
    from app.orders import dispatch
    from app.orders.reconciliation import reconcile_account
    from app.orders.schemas import validate_order
    from app.orders.service import new_order, request_hash
    from app.orders.states import QUEUED, record_event
    from app.core.db import new_session

    account_id, api_key = static_ip_account({"proxy": proxy.url(PROXY_USER, PROXY_PASSWORD)})
    admin = headers["admin"]
    shown = client.get(f"/accounts/{account_id}", headers=admin)
    assert shown.get_json()["egress"] == {"proxy": f"http://***@127.0.0.1:{proxy.port}"}
    assert PROXY_PASSWORD not in shown.get_data(as_text=True)

    def order_calls():
        return [call for call in proxy.requests_of(api_key) if call[1].startswith("/orders")]

    # A placement whose first attempt fails (503) looks its tag up in the order book before placing again.
    orders.broker.set_faults(error_next=1, error_status=503)
    placed = orders.place(market_order(option), role="admin", account=account_id).get_json()
    record = orders.wait_status(placed["id"], "COMPLETE", role="admin")
    assert record["attempts"] == 2
    assert len(at_broker(orders, api_key, placed["tag"])) == 1
    # (GET /orders/{id}: the order's history, read to confirm the COMPLETE postback: through the proxy too)
    assert [call for call in order_calls() if call != ("GET", f"/orders/{record['broker_order_id']}")] == \
        [("POST", "/orders/regular"), ("GET", "/orders"), ("POST", "/orders/regular")]

    body = resting_limit_order(orders.broker, future)
    resting = orders.place(body, role="admin", account=account_id).get_json()
    broker_order_id = orders.wait_status(resting["id"], "OPEN", role="admin")["broker_order_id"]
    new_price = round(body["price"] - 10 * future.tick_size, 2)
    assert client.patch(f"/orders/{resting['id']}", json={"price": new_price}, headers=admin).status_code == 202
    wait_for(lambda: at_broker(orders, api_key, resting["tag"])[0]["price"] == new_price, 10,
             what="the modification at the broker")
    assert client.delete(f"/orders/{resting['id']}", headers=admin).status_code == 202
    orders.wait_status(resting["id"], "CANCELLED", role="admin")
    assert ("PUT", f"/orders/regular/{broker_order_id}") in order_calls()
    assert ("DELETE", f"/orders/regular/{broker_order_id}") in order_calls()

    # Reconciliation reads the order book through the proxy too (here: for an order whose task was lost).
    fields = validate_order(market_order(option))
    lost = new_order(account_id, fields, digest=request_hash(account_id, fields))
    with new_session() as session:
        session.add(lost)
        record_event(session, lost, None, QUEUED)
        session.commit()
    book_reads = order_calls().count(("GET", "/orders"))
    report = reconcile_account(account_id, queued_lost_after=0)
    assert report["requeue"] == [lost.id]
    assert order_calls().count(("GET", "/orders")) == book_reads + 1
    dispatch.enqueue_placement(lost.id, account_id)
    orders.wait_status(lost.id, "COMPLETE", role="admin")
    assert proxy.refused == 0   # every request carried the proxy's credentials
