"""Expiry and the reconciler's cost against the real stack: an order whose retry comes after its expiry is
looked up at the broker and EXPIRED, never placed late; the reconciler expires an unsent order whose task
is gone (adopting it instead when an earlier attempt did reach the broker); and a reconciliation pass reads
an account's order book once, whatever the number of its pages, and not at all for an account with no
order in flight. Broker calls are counted at the account's egress proxy."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
import requests
from kiteconnect import KiteConnect

from tests.support.accounts import retire
from tests.support.forward_proxy import ForwardProxy
from tests.support.orders import market_order, place_at_broker, resting_limit_order

PROXY_USER, PROXY_PASSWORD = "desk", "pw-" + secrets.token_hex(4)


@pytest.fixture
def proxy():
    server = ForwardProxy("127.0.0.1", PROXY_USER, PROXY_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def account(client, headers, order_stack):
    """`account(egress=None)` → (account id, credentials): a service account on a paper-broker api key of its
    own, retired after the test (one test expires its session)."""
    made = []

    def make(egress: dict | None = None) -> tuple[str, dict]:
        suffix = secrets.token_hex(4)
        account_id = f"expiry-{suffix}"
        creds = {"api_key": f"paper-expiry-{suffix}", "api_secret": f"secret-{suffix}", "access_token": f"tok-{suffix}"}
        requests.post(f"{order_stack.root}/_sim/accounts", json={**creds, "cash": 1e9}, timeout=10).raise_for_status()
        created = client.post("/accounts", headers=headers["admin"], json={"account_id": account_id, **creds,
                                                                         "egress": egress})
        assert created.status_code == 201, created.get_json()
        made.append(account_id)
        return account_id, creds
    yield make
    retire(made)


def stored_order(account_id: str, option, lapsed_s: float, **columns) -> str:
    """A QUEUED order as if accepted `lapsed_s` seconds past its expiry, with no task carrying it."""
    from app.core.db import session_scope
    from app.models import utcnow
    from app.orders.schemas import validate_order
    from app.orders.service import new_order
    from app.orders.states import record_event

    with session_scope() as session:
        order = new_order(account_id, validate_order(market_order(option, expire_after_s=5)))
        for name, value in columns.items():
            setattr(order, name, value)
        order.accepted_at = order.created_at = order.updated_at = utcnow() - timedelta(seconds=5 + lapsed_s)
        order.expires_at = order.accepted_at + timedelta(seconds=5)
        session.add(order)
        record_event(session, order, None, "QUEUED", detail={"enqueue_failed": True})
        return order.id


def test_a_retry_after_the_expiry_is_looked_up_and_expired_never_placed(orders, option, account):
    account_id, creds = account()
    # The first attempt takes 1.2 s and fails (503); its retry comes after the order's 1 s expiry.
    orders.broker.set_faults(latency_ms=1200, error_next=1, error_status=503)
    placed = orders.place(market_order(option, expire_after_s=1), role="admin", account=account_id).get_json()
    record = orders.wait_status(placed["id"], "EXPIRED", role="admin", timeout=15)
    assert record["attempts"] == 2 and record["error"].startswith("expired: not sent by its expiry")
    last = record["events"][-1]
    assert (last["from_status"], last["to_status"], last["detail"]["looked_up"]) == ("SUBMITTING", "EXPIRED", True)
    assert [o for o in orders.broker.orders(creds["api_key"]) if o["tag"] == placed["tag"]] == []


def test_the_reconciler_expires_an_unsent_order_whose_task_is_gone(orders, option, account):
    from app.orders.reconciliation import reconcile_all

    account_id, creds = account()
    lost = stored_order(account_id, option, lapsed_s=3)
    waiting = stored_order(account_id, option, lapsed_s=-30)  # not expired yet: re-enqueued instead
    # An earlier attempt of this one reached the broker: it is adopted, not expired.
    reached = stored_order(account_id, option, lapsed_s=3, attempts=1, error="ReadTimeout")
    kite = KiteConnect(creds["api_key"], access_token=creds["access_token"], root=orders.broker.root)
    tag = orders.get(reached, role="admin").get_json()["tag"]
    place_at_broker(kite, account=account_id, variety="regular", exchange=option.exchange,
                    tradingsymbol=option.tradingsymbol, transaction_type="BUY", quantity=option.lot_size,
                    product="NRML", order_type="MARKET", market_protection=-1, tag=tag)

    summary = reconcile_all()[account_id]
    assert summary["expired"] == 1 and summary["requeued"] == 1
    expired = orders.get(lost, role="admin").get_json()
    assert expired["status"] == "EXPIRED" and expired["attempts"] == 0
    assert expired["events"][-1]["detail"] == {"source": "reconcile", "looked_up": True}
    assert orders.wait_status(reached, ("OPEN", "COMPLETE"), role="admin")["broker_order_id"]
    orders.wait_status(waiting, ("COMPLETE",), role="admin")  # its new task placed it
    tags = [o["tag"] for o in orders.broker.orders(creds["api_key"])]
    assert sorted(tags) == sorted([tag, orders.get(waiting, role="admin").get_json()["tag"]])


def test_a_pass_reads_the_order_book_once_per_account_in_flight_and_never_for_one_without(
        orders, client, headers, option, future, account, proxy):
    from app.orders.reconciliation import reconcile_account, reconcile_all

    egress = {"proxy": proxy.url(PROXY_USER, PROXY_PASSWORD)}
    (busy, busy_creds), (idle, idle_creds) = account(egress), account(egress)
    resting = [orders.place(resting_limit_order(orders.broker, future), role="admin", account=busy).get_json()["id"]
               for _ in range(3)]
    for order_id in resting:
        orders.wait_status(order_id, "OPEN", role="admin")
    done = orders.place(market_order(option), role="admin", account=idle).get_json()["id"]
    orders.wait_status(done, "COMPLETE", role="admin")

    def book_reads(creds) -> int:
        return proxy.requests_of(creds["api_key"]).count(("GET", "/orders"))

    before = book_reads(busy_creds), book_reads(idle_creds)
    report = reconcile_account(busy, page_size=2)  # two pages of its three open orders, one order book
    assert report["checked"] == 3 and (book_reads(busy_creds), book_reads(idle_creds)) == (before[0] + 1, before[1])
    summary = reconcile_all()
    assert busy in summary and idle not in summary
    assert (book_reads(busy_creds), book_reads(idle_creds)) == (before[0] + 2, before[1])
    for order_id in resting:  # leave no order in flight behind a proxy that is going away
        assert client.delete(f"/orders/{order_id}", headers=headers["admin"]).status_code == 202
    for order_id in resting:
        orders.wait_status(order_id, "CANCELLED", role="admin")


def test_an_account_without_a_session_still_has_its_lapsed_unsent_orders_expired(orders, option, account):
    from app.core.db import session_scope
    from app.kite_session.state import mark_expired
    from app.models import Order
    from app.orders.reconciliation import reconcile_all
    from app.orders.states import record_event

    account_id, _ = account()
    never_sent = stored_order(account_id, option, lapsed_s=3)
    tried = stored_order(account_id, option, lapsed_s=3)  # an attempt was made: only the broker can tell
    with session_scope() as session:
        record_event(session, session.get(Order, tried), "QUEUED", "SUBMITTING")
    assert mark_expired(account_id, "TokenException: session expired", "test")

    summary = reconcile_all()[account_id]
    assert summary["expired"] == 1
    record = orders.get(never_sent, role="admin").get_json()
    assert record["status"] == "EXPIRED" and record["events"][-1]["detail"] == {"source": "reconcile",
                                                                               "looked_up": False}
    assert orders.get(tried, role="admin").get_json()["status"] == "QUEUED"  # held until the next login
