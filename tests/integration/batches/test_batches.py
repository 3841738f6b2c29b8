"""Batch orders on the real stack: a Celery chord of legs, settlement, rollback to flat."""
from __future__ import annotations

import json
import os
import signal
import time

from app.core.db import session_scope
from app.models import Batch
from tests.support.batches import iron_condor, leg, net_positions
from tests.support.waiting import wait_for
from tests.support.environment import BROKER_ACCOUNTS

PRIMARY_KEY = BROKER_ACCOUNTS["primary"]["api_key"]


def submit(client, headers, legs, **options):
    body = {"legs": legs, "wait": 20, **options}
    return client.post("/accounts/primary/batch-orders", headers=headers["primary"], json=body)


def broker_orders_by_tag(broker, tags):
    return [o for o in broker.orders(PRIMARY_KEY) if o.get("tag") in tags]


def order_tags(client, headers, order_ids):
    return {client.get(f"/orders/{i}", headers=headers["primary"]).json["tag"] for i in order_ids}


def test_iron_condor_completes(client, headers, batch_stack, chain):
    response = submit(client, headers, iron_condor(chain))
    assert response.status_code == 200, response.json
    batch = response.json
    assert batch["status"] == "COMPLETED" and batch["success"] is True
    assert batch["total_orders"] == batch["succeeded"] == 4 and batch["failed"] == 0
    assert len(batch["order_ids"]) == 4 and batch["rollback"] == []
    assert all(l["broker_order_id"] and l["status"] in ("OPEN", "COMPLETE") for l in batch["legs"])
    # Exactly one broker order per leg, each carrying its leg's tag.
    tags = order_tags(client, headers, batch["order_ids"])
    assert len(broker_orders_by_tag(batch_stack, tags)) == 4
    again = client.get(f"/batches/{batch['batch_id']}", headers=headers["primary"])
    assert again.status_code == 200 and again.json["status"] == "COMPLETED"
    # Every leg is an ordinary order with its events.
    order = client.get(f"/orders/{batch['order_ids'][0]}", headers=headers["primary"]).json
    assert order["batch_id"] == batch["batch_id"] and order["role"] == "leg" and order["events"]


def completed_batches_counted() -> float:
    from app.batches.metrics import batch_orders_total
    from app.core.redis_client import get_redis

    return float(get_redis().hget(batch_orders_total.key, json.dumps(["COMPLETED"])) or 0)


def test_a_batch_is_decided_and_counted_once_however_often_it_is_settled(client, headers, batch_stack, chain):
    """The last leg decides a batch and the chord callback announces it; a redelivered callback,
    another announcement or the watchdog must change nothing and count nothing twice."""
    from app.batches.settlement import announce
    from workers.tasks.batches import settle_batch, settle_stuck_batches

    before = completed_batches_counted()
    batch = submit(client, headers, iron_condor(chain)).json
    assert batch["status"] == "COMPLETED", batch
    wait_for(lambda: completed_batches_counted() == before + 1, what="the callback's announcement")

    assert settle_batch.run([], batch["batch_id"]) == {"status": "COMPLETED"}  # as if redelivered
    announce(batch["batch_id"])
    assert batch["batch_id"] not in settle_stuck_batches.run(older_than_s=0)
    time.sleep(0.3)  # a late second announcement from the worker would have landed by now
    assert completed_batches_counted() == before + 1
    again = client.get(f"/batches/{batch['batch_id']}", headers=headers["primary"]).json
    assert (again["status"], again["completed_at"]) == ("COMPLETED", batch["completed_at"])


def test_rejected_leg_rolls_back_to_flat(client, headers, batch_stack, chain, kite):
    legs = iron_condor(chain)
    symbols = [l["tradingsymbol"] for l in legs]
    before = net_positions(kite, symbols)
    batch_stack.set_faults(reject_symbols=[legs[2]["tradingsymbol"]])
    response = submit(client, headers, legs)
    assert response.status_code == 200, response.json
    batch = response.json
    assert batch["status"] == "ROLLED_BACK", batch
    assert batch["success"] is False and batch["failed"] == 1 and batch["succeeded"] == 3
    rejected = [l for l in batch["legs"] if l["status"] == "REJECTED"]
    assert [l["tradingsymbol"] for l in rejected] == [legs[2]["tradingsymbol"]]
    # The three filled MARKET legs were reversed, each by one order that filled.
    assert sorted(a["action"] for a in batch["rollback"]) == ["reverse"] * 3
    assert all(a["result"] == "DONE" and a["order_id"] for a in batch["rollback"])
    for action in batch["rollback"]:
        reversal = client.get(f"/orders/{action['order_id']}", headers=headers["primary"]).json
        assert reversal["role"] == "rollback" and reversal["status"] == "COMPLETE"
    assert wait_for(lambda: net_positions(kite, symbols) == before, what="positions back to where they started")


def test_open_limit_leg_is_cancelled(client, headers, batch_stack, chain, kite):
    by_key, strikes = chain
    mid = len(strikes) // 2
    resting = by_key[(strikes[mid], "CE")]
    quote = kite.ltp([f"NFO:{resting.tradingsymbol}"])[f"NFO:{resting.tradingsymbol}"]["last_price"]
    far_below = max(0.05, round(round(quote * 0.2 / 0.05) * 0.05, 2))
    doomed = by_key[(strikes[mid + 1], "PE")]
    batch_stack.set_faults(reject_symbols=[doomed.tradingsymbol])
    response = submit(client, headers, [leg(resting, "BUY", order_type="LIMIT", price=far_below),
                                        leg(doomed, "BUY")])
    batch = response.json
    assert batch["status"] == "ROLLED_BACK", batch
    assert [a["action"] for a in batch["rollback"]] == ["cancel"]
    limit_leg = next(l for l in batch["legs"] if l["tradingsymbol"] == resting.tradingsymbol)
    assert wait_for(lambda: client.get(f"/orders/{limit_leg['order_id']}", headers=headers["primary"])
                    .json["status"] == "CANCELLED", what="limit leg cancelled")


def test_long_legs_first_then_short_leg_fails_and_longs_are_reversed(client, headers, batch_stack, chain, kite):
    legs = iron_condor(chain)
    symbols = [l["tradingsymbol"] for l in legs]
    before = net_positions(kite, symbols)
    batch_stack.set_faults(reject_symbols=[legs[1]["tradingsymbol"]])  # a short leg
    response = submit(client, headers, legs, execution="buy_first")
    batch = response.json
    assert batch["status"] == "ROLLED_BACK", batch
    longs = [l for l in batch["legs"] if l["transaction_type"] == "BUY"]
    assert all(l["filled_quantity"] > 0 for l in longs)  # they filled before the short leg failed
    reversed_legs = {a["leg_order_id"] for a in batch["rollback"] if a["action"] == "reverse"}
    assert {l["order_id"] for l in longs} <= reversed_legs
    assert wait_for(lambda: net_positions(kite, symbols) == before, what="flat after reversing the long legs")


def test_no_rollback_leaves_partial(client, headers, batch_stack, chain, kite):
    legs = iron_condor(chain)
    batch_stack.set_faults(reject_symbols=[legs[0]["tradingsymbol"]])
    response = submit(client, headers, legs, rollback_on_failure=False)
    batch = response.json
    assert batch["status"] == "PARTIAL" and batch["succeeded"] == 3 and batch["failed"] == 1
    assert batch["rollback"] == []
    kept = [l for l in batch["legs"] if l["status"] in ("OPEN", "COMPLETE")]
    assert len(kept) == 3


def test_worker_killed_during_batch_still_settles(client, headers, batch_stack, chain, celery_worker):
    batch_stack.set_faults(latency_ms=1500)
    response = submit(client, headers, iron_condor(chain), wait=0)
    assert response.status_code == 202 and response.json["status"] == "RUNNING"
    batch_id = response.json["batch_id"]

    def submitting():
        legs = client.get(f"/batches/{batch_id}", headers=headers["primary"]).json["legs"]
        return any(l["status"] == "SUBMITTING" for l in legs)

    wait_for(submitting, what="a leg inside the broker call")
    for pid in celery_worker.children():  # the pool processes, mid-call: their messages are requeued
        os.kill(pid, signal.SIGKILL)
    batch_stack.clear_faults()
    done = wait_for(lambda: (b := client.get(f"/batches/{batch_id}", headers=headers["primary"]).json)
                    ["status"] != "RUNNING" and b, timeout=60, what="the batch to settle")
    assert done["status"] == "COMPLETED", done
    tags = order_tags(client, headers, done["order_ids"])
    assert len(broker_orders_by_tag(batch_stack, tags)) == 4  # redelivery placed nothing twice


def test_watchdog_settles_a_batch_whose_chord_is_gone(client, headers, batch_stack, chain):
    from app.batches.service import create_batch
    from app.orders.execution import submit_order
    from workers.tasks.batches import settle_stuck_batches

    batch, _ = create_batch("primary", iron_condor(chain)[:2], True, "parallel")
    for order in batch.legs:  # the legs went out, but the chord's callback never ran
        assert submit_order(order.id).action == "done"
    assert batch.id in settle_stuck_batches.run(older_than_s=0)
    with session_scope() as session:
        assert session.get(Batch, batch.id).status == "COMPLETED"


def test_validation_names_the_leg_and_field(client, headers, chain):
    legs = iron_condor(chain)
    cases = {
        "no legs": {"legs": []},
        "eleven legs": {"legs": legs * 3},
        "bad leg": {"legs": [legs[0], legs[1], {**legs[2], "quantity": 7}]},
        "mixed accounts": {"legs": [legs[0], {**legs[1], "account_id": "other"}]},
        "bad execution": {"legs": legs, "execution": "random"},
    }
    for name, body in cases.items():
        response = client.post("/accounts/primary/batch-orders", headers=headers["primary"], json=body)
        assert response.status_code == 422, (name, response.json)
        assert response.json["error"]["code"] == "validation_error"
    details = client.post("/accounts/primary/batch-orders", headers=headers["primary"],
                          json=cases["bad leg"]).json["error"]["details"]
    assert "quantity" in details["legs"]["2"]
    details = client.post("/accounts/primary/batch-orders", headers=headers["primary"],
                          json=cases["mixed accounts"]).json["error"]["details"]
    assert "account_id" in details["legs"]["1"]
    with session_scope() as session:  # nothing was stored for any invalid batch
        assert session.query(Batch).filter(Batch.total_orders.in_([0, 11, 3])).count() == 0


def test_advanced_path_and_account_isolation(client, headers, batch_stack, chain):
    body = {"account_id": "primary", "orders": iron_condor(chain)[:1], "wait": 20}
    response = client.post("/advanced/batch-orders", headers=headers["primary"], json=body)
    assert response.status_code == 200 and response.json["status"] == "COMPLETED"
    batch_id = response.json["batch_id"]
    assert client.get(f"/batches/{batch_id}", headers=headers["other"]).status_code == 404
    body["account_id"] = "other"
    assert client.post("/advanced/batch-orders", headers=headers["primary"], json=body).status_code == 403
