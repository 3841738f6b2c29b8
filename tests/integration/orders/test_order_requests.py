"""The order REST API: validation, idempotency, account isolation, modify/cancel, postbacks, reconciliation."""
from __future__ import annotations

import hashlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from app.core.db import new_session
from app.models import Order
from tests.support.orders import cancel_at_broker, market_order, resting_limit_order
from tests.support.waiting import wait_for


def _order_count() -> int:
    with new_session() as session:
        return session.scalar(select(func.count()).select_from(Order))


def _queue_length() -> int:
    from app.core.redis_client import get_redis

    return get_redis().llen("orders")


@pytest.mark.parametrize("field, change", [
    ("exchange", {"exchange": None}),
    ("tradingsymbol", {"tradingsymbol": "NOSUCHSYMBOL"}),
    ("transaction_type", {"transaction_type": "HOLD"}),
    ("quantity", {"quantity": 0}),
    ("quantity", {"quantity": 7}),            # not a multiple of the lot size
    ("quantity", {"quantity": "lots"}),
    ("product", {"product": "CNC"}),          # not allowed for F&O
    ("order_type", {"order_type": "STOP"}),
    ("price", {"order_type": "LIMIT"}),       # LIMIT without price
    ("price", {"order_type": "LIMIT", "price": 100.03}),  # off the 0.05 tick
    ("trigger_price", {"order_type": "SL-M"}),
    ("trigger_price", {"order_type": "SL", "price": 100.0, "trigger_price": 100.02}),
    ("variety", {"variety": "bracket"}),
    ("validity", {"validity": "GTC"}),
    ("validity_ttl", {"validity": "TTL"}),  # TTL without its minutes
    ("validity_ttl", {"validity": "TTL", "validity_ttl": 1441}),
    ("validity_ttl", {"validity_ttl": 5}),  # minutes without TTL
    ("tag", {"tag": "x" * 21}),
    ("market_protection", {"market_protection": 0}),
    ("surprise", {"surprise": 1}),
])
def test_invalid_orders_are_422_naming_the_field_and_not_enqueued(orders, option, field, change):
    body = market_order(option)
    for name, value in change.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = value
    before_rows, before_queue = _order_count(), _queue_length()
    response = orders.place(body)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"], error
    assert _order_count() == before_rows
    assert _queue_length() == before_queue


def test_bad_bodies_are_4xx_not_500(orders, client, headers):
    response = client.post("/accounts/primary/orders", data="{not json", headers={
        **headers["primary"], "Content-Type": "application/json"})
    assert response.status_code == 400
    assert orders.place([1, 2]).status_code == 422
    response = client.post("/orders/place", json={"exchange": "NFO"}, headers=headers["primary"])
    assert response.status_code == 422 and "account_id" in response.get_json()["error"]["details"]
    assert client.get("/accounts/primary/orders?limit=0", headers=headers["primary"]).status_code == 422
    assert client.get("/accounts/primary/orders?status=NOPE", headers=headers["primary"]).status_code == 422
    assert client.get("/accounts/primary/orders?since=yesterday", headers=headers["primary"]).status_code == 422
    assert client.get("/accounts/primary/orders?cursor=%%%", headers=headers["primary"]).status_code == 400


def test_concurrent_requests_with_one_idempotency_key_make_one_order(orders, live_server, headers, option):
    key = uuid.uuid4().hex
    body = market_order(option)

    def post(_):
        return requests.post(f"{live_server.url}/accounts/primary/orders", json=body, timeout=10,
                             headers={**headers["primary"], "Idempotency-Key": key})

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(post, range(10)))
    assert sorted({r.status_code for r in responses}) in ([200, 202], [202])
    assert [r.status_code for r in responses].count(202) == 1
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    order_id = ids.pop()
    record = orders.wait_status(order_id, "COMPLETE")
    assert len(orders.broker_orders(record["tag"])) == 1
    with new_session() as session:
        assert session.scalar(select(func.count()).select_from(Order).where(Order.idempotency_key == key)) == 1

    # same key, different body: a conflict, nothing new
    other = orders.place(market_order(option, quantity=2 * option.lot_size), key=key)
    assert other.status_code == 409
    assert other.get_json()["error"]["code"] == "idempotency_conflict"
    # the same key on another account is another order
    assert orders.place(body, role="other", account="other", key=key).status_code == 202


def test_account_isolation(orders, client, headers, option):
    mine = orders.place(market_order(option)).get_json()
    theirs = orders.place(market_order(option), role="other", account="other").get_json()
    # account routes: 403
    assert orders.place(market_order(option), role="primary", account="other").status_code == 403
    assert client.get("/accounts/other/orders", headers=headers["primary"]).status_code == 403
    assert client.post("/orders/place", json={"account_id": "other", **market_order(option)},
                       headers=headers["primary"]).status_code == 403
    # order routes: 404, as for an id that does not exist
    for method in ("get", "delete"):
        response = getattr(client, method)(f"/orders/{theirs['id']}", headers=headers["primary"])
        assert response.status_code == 404
    assert client.patch(f"/orders/{theirs['id']}", json={"price": 1}, headers=headers["primary"]).status_code == 404
    assert client.post(f"/orders/{theirs['id']}/replay", headers=headers["primary"]).status_code == 404
    assert client.get(f"/orders/{mine['id']}", headers=headers["primary"]).status_code == 200
    assert client.get(f"/orders/{mine['id']}", headers=headers["admin"]).status_code == 200
    listed = client.get("/accounts/primary/orders?limit=500", headers=headers["primary"]).get_json()["orders"]
    assert {o["account_id"] for o in listed} == {"primary"}
    assert client.get(f"/orders/{mine['id']}").status_code == 401


def test_listing_filters_and_cursor(orders, client, headers, option):
    ids = [orders.place(market_order(option)).get_json()["id"] for _ in range(3)]
    for order_id in ids:
        orders.wait_status(order_id, "COMPLETE")
    first = client.get("/accounts/primary/orders?limit=2&status=COMPLETE", headers=headers["primary"]).get_json()
    assert first["count"] == 2 and first["next_cursor"]
    assert [o["id"] for o in first["orders"]] == ids[::-1][:2]
    second = client.get(f"/accounts/primary/orders?limit=2&status=COMPLETE&cursor={first['next_cursor']}",
                        headers=headers["primary"]).get_json()
    assert second["orders"][0]["id"] == ids[0]
    assert all(o["status"] == "COMPLETE" for o in first["orders"] + second["orders"])
    future = client.get("/accounts/primary/orders?since=2999-01-01T00:00:00Z", headers=headers["primary"]).get_json()
    assert future["orders"] == []


def test_modify_and_cancel_an_open_limit_order(orders, client, headers, future):
    body = resting_limit_order(orders.broker, future)
    placed = orders.place(body).get_json()
    record = orders.wait_status(placed["id"], "OPEN")
    new_price = round(body["price"] - 10 * future.tick_size, 2)

    response = client.patch(f"/orders/{placed['id']}", json={"price": new_price}, headers=headers["primary"])
    assert response.status_code == 202, response.get_json()
    wait_for(lambda: orders.get(placed["id"]).get_json()["price"] == new_price, 10, what="the modified price")
    at_broker = orders.broker_orders(record["tag"])
    assert len(at_broker) == 1 and at_broker[0]["price"] == new_price
    # a modification that breaks the tick size is refused before the worker sees it
    assert client.patch(f"/orders/{placed['id']}", json={"price": new_price + 0.01},
                        headers=headers["primary"]).status_code == 422
    assert client.patch(f"/orders/{placed['id']}", json={}, headers=headers["primary"]).status_code == 422

    response = client.delete(f"/orders/{placed['id']}", headers=headers["primary"])
    assert response.status_code == 202
    record = orders.wait_status(placed["id"], "CANCELLED")
    assert orders.broker_orders(record["tag"])[0]["status"] == "CANCELLED"
    assert client.delete(f"/orders/{placed['id']}", headers=headers["primary"]).status_code == 409
    assert client.patch(f"/orders/{placed['id']}", json={"price": new_price},
                        headers=headers["primary"]).status_code == 409


def _signed(order_row: dict, secret: str) -> dict:
    checksum = hashlib.sha256((order_row["order_id"] + order_row["order_timestamp"] + secret).encode()).hexdigest()
    return {**order_row, "checksum": checksum}


def test_postback_with_wrong_checksum_is_401_and_changes_nothing(orders, client, future, accounts, live_server):
    orders.broker.settings(postback_url="")  # the genuine update below is ours to deliver
    try:
        placed = orders.place(resting_limit_order(orders.broker, future)).get_json()
        before = orders.wait_status(placed["id"], "OPEN")
        row = orders.broker_orders(before["tag"])[0]
        forged = _signed({**row, "status": "COMPLETE", "filled_quantity": row["quantity"]}, "not-the-secret")
        response = client.post("/postback/kite", data=json.dumps(forged), content_type="application/json")
        assert response.status_code == 401
        after = orders.get(placed["id"]).get_json()
        assert after["status"] == "OPEN" and after["filled_quantity"] == 0
        assert len(after["events"]) == len(before["events"])

        # a genuine update (the order cancelled at the broker: a postback's final status is checked
        # there, test_postback_verification.py), delivered twice (postback and WebSocket both do): applied once
        cancel_at_broker(before["broker_order_id"])
        genuine = _signed(orders.broker_orders(before["tag"])[0], accounts["primary"]["api_secret"])
        assert genuine["status"] == "CANCELLED"
        assert client.post("/postback/kite", json=genuine).status_code == 200
        assert client.post("/postback/kite", json=genuine).status_code == 200
        record = orders.get(placed["id"]).get_json()
        assert record["status"] == "CANCELLED"
        assert [e["to_status"] for e in record["events"]].count("CANCELLED") == 1
        assert client.post("/postback/kite", json={"order_id": "x"}).status_code == 400
    finally:
        orders.broker.settings(postback_url=f"{live_server.url}/postback/kite")


def test_websocket_order_update_is_deduplicated(orders, future):
    from app.orders.reconciliation import apply_broker_update

    placed = orders.place(resting_limit_order(orders.broker, future)).get_json()
    record = orders.wait_status(placed["id"], "OPEN")
    row = orders.broker_orders(record["tag"])[0]
    partial = {**row, "filled_quantity": future.lot_size, "average_price": 123.45}
    assert apply_broker_update("primary", partial) is not None
    assert apply_broker_update("primary", partial) is None          # the same update again: nothing
    assert apply_broker_update("other", partial) is None            # another account never matches
    record = orders.get(placed["id"]).get_json()
    assert record["filled_quantity"] == future.lot_size and record["average_price"] == 123.45
    orders.broker  # leave the broker order to the reconciliation test


def test_reconciliation_repairs_missed_updates_and_lost_tasks(orders, client, headers, future, option, live_server):
    from app.orders.service import new_order, request_hash
    from app.orders.schemas import validate_order
    from app.orders.states import QUEUED, record_event
    from workers.tasks.orders import reconcile_open_orders

    # 1. a missed update: the postback is lost, the order is cancelled at the broker behind our back
    orders.broker.settings(postback_url="")
    try:
        placed = orders.place(resting_limit_order(orders.broker, future)).get_json()
        record = orders.wait_status(placed["id"], "OPEN")
        cancel_at_broker(record["broker_order_id"])
        assert orders.get(placed["id"]).get_json()["status"] == "OPEN"

        # 2. a lost task: an order recorded QUEUED but never enqueued
        fields = validate_order(market_order(option))
        lost = new_order("primary", fields, digest=request_hash("primary", fields))
        with new_session() as session:
            session.add(lost)
            record_event(session, lost, None, QUEUED)
            session.commit()

        summary = reconcile_open_orders.run(queued_lost_after=0)
        assert summary["primary"]["requeued"] >= 1
        assert orders.get(placed["id"]).get_json()["status"] == "CANCELLED"
        lost_record = orders.wait_status(lost.id, "OPEN" if False else ("OPEN", "COMPLETE"))
        assert len(orders.broker_orders(lost_record["tag"])) == 1
    finally:
        orders.broker.settings(postback_url=f"{live_server.url}/postback/kite")
