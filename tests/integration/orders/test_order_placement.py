"""Exactly-once placement through the real worker and the paper broker (official client)."""
from __future__ import annotations

import time

from tests.support.orders import market_order, place_at_broker
from tests.support.waiting import wait_for


def test_market_order_completes_with_one_broker_order(orders, option):
    response = orders.place(market_order(option))
    assert response.status_code == 202, response.get_json()
    placed = response.get_json()
    assert placed["status"] == "QUEUED"
    assert placed["market_protection"] == -1
    assert len(placed["tag"]) <= 20

    record = orders.wait_status(placed["id"], "COMPLETE")
    assert record["attempts"] == 1
    assert record["filled_quantity"] == option.lot_size
    assert record["average_price"] > 0
    at_broker = orders.broker_orders(placed["tag"])
    assert len(at_broker) == 1
    assert record["broker_order_id"] == at_broker[0]["order_id"]
    statuses = [e["to_status"] for e in record["events"]]
    assert statuses[:3] == ["QUEUED", "SUBMITTING", "OPEN"] or statuses[:3] == ["QUEUED", "SUBMITTING", "COMPLETE"]
    assert statuses[-1] == "COMPLETE"


def test_place_through_orders_place_path(orders, client, headers, option):
    response = client.post("/orders/place", json={"account_id": "primary", **market_order(option)},
                           headers=headers["primary"])
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["account_id"] == "primary"
    orders.wait_status(response.get_json()["id"], "COMPLETE")


def test_broker_rejection_is_final(orders, option):
    orders.broker.set_faults(reject_next=1)
    placed = orders.place(market_order(option)).get_json()
    record = orders.wait_status(placed["id"], "REJECTED")
    assert record["attempts"] == 1
    assert "RMS" in (record["error"] or record["status_message"])
    time.sleep(0.3)  # nothing retries a rejection
    assert orders.get(placed["id"]).get_json()["attempts"] == 1
    assert len(orders.broker_orders(placed["tag"])) == 1


def test_two_transient_errors_then_success(orders, option):
    orders.broker.set_faults(error_next=2, error_status=503)
    placed = orders.place(market_order(option)).get_json()
    record = orders.wait_status(placed["id"], "COMPLETE")
    assert record["attempts"] == 3
    assert len(orders.broker_orders(placed["tag"])) == 1
    errors = [e["error"] for e in record["events"] if e["to_status"] == "QUEUED" and e["error"]]
    assert len(errors) == 2 and all("503" in e for e in errors)


def test_accept_then_timeout_places_exactly_one(orders, option):
    orders.broker.set_faults(accept_then_timeout_next=1, timeout_s=4)
    placed = orders.place(market_order(option)).get_json()
    record = orders.wait_status(placed["id"], "COMPLETE", timeout=20)
    assert len(orders.broker_orders(placed["tag"])) == 1
    assert record["broker_order_id"] == orders.broker_orders(placed["tag"])[0]["order_id"]
    # whichever came first (postback or the retry's tag lookup), nothing was placed twice
    time.sleep(1.0)
    assert len(orders.broker_orders(placed["tag"])) == 1


def test_dead_letter_then_replay(orders, client, headers, option):
    orders.broker.set_faults(error_next=5, error_status=503)
    placed = orders.place(market_order(option)).get_json()
    record = orders.wait_status(placed["id"], "DEAD_LETTER", timeout=25)
    assert record["attempts"] == 5
    assert "503" in record["error"]
    assert orders.broker_orders(placed["tag"]) == []

    listed = client.get("/orders/dead-letter", headers=headers["primary"]).get_json()
    assert placed["id"] in [o["id"] for o in listed["orders"]]
    assert client.get("/orders/dead-letter", headers=headers["other"]).get_json()["orders"] == [] or \
        placed["id"] not in [o["id"] for o in client.get("/orders/dead-letter", headers=headers["other"]).get_json()["orders"]]

    response = client.post(f"/orders/{placed['id']}/replay", headers=headers["primary"])
    assert response.status_code == 202, response.get_json()
    record = orders.wait_status(placed["id"], "COMPLETE")
    assert len(orders.broker_orders(placed["tag"])) == 1
    assert [e["to_status"] for e in record["events"]].count("DEAD_LETTER") == 1
    # a second replay of a completed order is refused
    assert client.post(f"/orders/{placed['id']}/replay", headers=headers["primary"]).status_code == 409


def test_worker_child_killed_in_broker_call_is_redelivered_once(orders, option, celery_worker):
    orders.broker.set_faults(latency_ms=1500)
    placed = orders.place(market_order(option)).get_json()
    wait_for(lambda: orders.get(placed["id"]).get_json()["status"] == "SUBMITTING", 10, 0.02,
             "the worker inside the broker call")
    time.sleep(0.3)  # the HTTP request is in flight at the broker (1.5 s latency)
    children = celery_worker.children()
    assert children
    import os
    import signal
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    orders.broker.clear_faults()

    record = orders.wait_status(placed["id"], ("COMPLETE", "OPEN"), timeout=30)
    wait_for(lambda: len(orders.broker_orders(placed["tag"])) >= 1, 5, what="the broker order")
    time.sleep(0.5)
    assert len(orders.broker_orders(placed["tag"])) == 1
    assert record["attempts"] >= 2  # the redelivered task claimed it again after the lease
    assert record["broker_order_id"] == orders.broker_orders(placed["tag"])[0]["order_id"]


def test_burst_is_smoothed_without_broker_rate_limits(orders, option):
    # Order requests only: verifying each COMPLETE postback reads the order's history (Kite's 10
    # "other" calls a second), where a 429 is retried and is not what this test is about.
    before = orders.broker.state()["rate_limited_by_class"]["order"]
    ids = []
    for _ in range(40):
        response = orders.place(market_order(option))
        assert response.status_code == 202
        ids.append(response.get_json()["id"])
    records = [orders.wait_status(order_id, "COMPLETE", timeout=30) for order_id in ids]
    assert all(r["attempts"] == 1 for r in records), [r["attempts"] for r in records]
    assert orders.broker.state()["rate_limited_by_class"]["order"] == before
    assert all(len(orders.broker_orders(r["tag"])) == 1 for r in records)


def test_dead_lettered_order_found_at_the_broker_is_repaired_by_reconciliation(orders, option, accounts):
    """A last attempt that timed out may have placed the order after all: reconciliation finds it
    by its tag, and the trader is not left believing a live order failed."""
    from kiteconnect import KiteConnect

    from app.core.db import session_scope
    from app.models import Order
    from app.orders.reconciliation import reconcile_account
    from app.orders.service import new_order
    from app.orders.states import record_event
    from app.orders.schemas import validate_order

    with session_scope() as session:
        order = new_order("primary", validate_order(market_order(option)))
        order.status, order.attempts, order.error = "DEAD_LETTER", 5, "gave up after 5 attempts: ReadTimeout"
        session.add(order)
        record_event(session, order, None, "DEAD_LETTER", error=order.error)
        order_id, tag = order.id, order.tag
    creds = accounts["primary"]
    kite = KiteConnect(creds["api_key"], access_token=creds["access_token"], root=orders.broker.root)
    place_at_broker(kite, variety="regular", exchange=option.exchange, tradingsymbol=option.tradingsymbol,
                    transaction_type="BUY", quantity=option.lot_size, product="NRML", order_type="MARKET",
                    market_protection=-1, tag=tag)

    reconcile_account("primary")
    record = orders.get(order_id).get_json()
    assert record["status"] == "COMPLETE" and record["broker_order_id"]
    assert len(orders.broker_orders(tag)) == 1
    # A dead letter with nothing at the broker stays a dead letter.
    with session_scope() as session:
        lone = new_order("primary", validate_order(market_order(option)))
        lone.status, lone.error = "DEAD_LETTER", "gave up"
        session.add(lone)
        lone_id = lone.id
    reconcile_account("primary")
    with session_scope() as session:
        assert session.get(Order, lone_id).status == "DEAD_LETTER"


def test_order_whose_enqueue_failed_is_requeued_at_the_next_reconciliation(orders, option):
    """Redis refused the enqueue: the record says so, and the next reconciliation (beat, 5 s) sends it."""
    from app.orders import service
    from workers.tasks.orders import reconcile_open_orders

    original = service.dispatch.enqueue_placement
    service.dispatch.enqueue_placement = lambda *args, **kwargs: False  # what dispatch answers when Redis is down
    try:
        response = orders.place(market_order(option))
    finally:
        service.dispatch.enqueue_placement = original
    assert response.status_code == 202
    order_id = response.get_json()["id"]
    time.sleep(0.5)
    assert orders.get(order_id).get_json()["status"] == "QUEUED"  # nothing carried it
    reconcile_open_orders.run()
    record = orders.wait_status(order_id, "COMPLETE")
    assert record["attempts"] == 1
    assert len(orders.broker_orders(record["tag"])) == 1


def test_an_order_task_leaves_no_result_and_no_subscription_behind(orders, option, monkeypatch, test_env):
    """The order's outcome is in the database: its task's result is neither stored by the worker nor
    subscribed to by the sender (app.core.task_client.send_untracked)."""
    import redis

    from app.core import task_client

    sent = []

    def recording(*args, **kwargs):
        task = task_client.send_untracked(*args, **kwargs)
        sent.append(task.id)
        return task

    monkeypatch.setattr("app.orders.dispatch.send_untracked", recording)
    placed = orders.place(market_order(option)).get_json()
    orders.wait_status(placed["id"], "COMPLETE")
    assert sent
    client = redis.Redis.from_url(test_env.redis_url)
    for task_id in sent:
        assert client.pubsub_numsub(f"celery-task-meta-{task_id}")[0][1] == 0
        assert not client.exists(f"celery-task-meta-{task_id}")
