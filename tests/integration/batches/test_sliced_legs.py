"""Batch legs above the freeze quantity: sliced like single orders, each slice a leg of the chord,
so the verdict and the rollback treat every broker order alike."""
from __future__ import annotations

from tests.support.batches import leg, net_positions
from tests.support.environment import BROKER_ACCOUNTS
from tests.support.waiting import wait_for

NIFTY_FREEZE = 1755   # app/market/data/freeze_quantities.csv: 27 lots of 65
PRIMARY_KEY = BROKER_ACCOUNTS["primary"]["api_key"]


def submit(client, headers, legs):
    return client.post("/accounts/primary/batch-orders", headers=headers["primary"],
                       json={"legs": legs, "wait": 30, "margin_check": False})


def broker_orders_of(batch_stack, client, headers, order_ids):
    tags = {client.get(f"/orders/{i}", headers=headers["primary"]).json["tag"] for i in order_ids}
    return [o for o in batch_stack.orders(PRIMARY_KEY) if o.get("tag") in tags]


def test_a_leg_above_the_freeze_quantity_goes_out_as_slices_and_the_batch_completes(
        client, headers, batch_stack, chain):
    by_key, strikes = chain
    mid = len(strikes) // 2
    big = by_key[(strikes[mid + 6], "CE")]
    small = by_key[(strikes[mid - 6], "PE")]
    quantity = 2 * NIFTY_FREEZE + big.lot_size
    response = submit(client, headers, [leg(big, "BUY", lots=quantity // big.lot_size), leg(small, "BUY")])
    assert response.status_code == 200, response.json
    batch = response.json
    assert batch["status"] == "COMPLETED", batch
    assert batch["total_orders"] == 4
    slices = [l for l in batch["legs"] if l.get("parent_id")]
    assert [l["quantity"] for l in slices] == [NIFTY_FREEZE, NIFTY_FREEZE, big.lot_size]
    assert len({l["parent_id"] for l in slices}) == 1 and "parent_id" not in batch["legs"][-1]

    parent = client.get(f"/orders/{slices[0]['parent_id']}", headers=headers["primary"]).json
    assert parent["role"] == "parent" and parent["quantity"] == quantity
    assert wait_for(lambda: client.get(f"/orders/{parent['id']}", headers=headers["primary"]).json["status"]
                    == "COMPLETE", what="the parent to follow its slices")
    parent = client.get(f"/orders/{parent['id']}", headers=headers["primary"]).json
    assert parent["filled_quantity"] == quantity and len(parent["children"]) == 3
    # One broker order per slice and one for the small leg; the parent itself never reached the broker.
    sent = broker_orders_of(batch_stack, client, headers, [l["order_id"] for l in batch["legs"]])
    assert sorted(o["quantity"] for o in sent) == sorted([NIFTY_FREEZE, NIFTY_FREEZE, big.lot_size, small.lot_size])
    assert not broker_orders_of(batch_stack, client, headers, [parent["id"]])


def test_a_failed_leg_rolls_every_filled_slice_back(client, headers, batch_stack, chain, kite):
    by_key, strikes = chain
    mid = len(strikes) // 2
    big = by_key[(strikes[mid + 7], "CE")]
    doomed = by_key[(strikes[mid - 7], "PE")]
    before = net_positions(kite, [big.tradingsymbol])
    batch_stack.set_faults(reject_symbols=[doomed.tradingsymbol])
    try:
        response = submit(client, headers, [leg(big, "BUY", lots=2 * NIFTY_FREEZE // big.lot_size),
                                            leg(doomed, "BUY")])
    finally:
        batch_stack.clear_faults()
    assert response.status_code == 200, response.json
    batch = response.json
    assert batch["status"] == "ROLLED_BACK", batch
    assert (batch["succeeded"], batch["failed"]) == (2, 1)
    assert sorted(a["action"] for a in batch["rollback"]) == ["reverse", "reverse"]   # each slice reversed
    assert all(a["result"] == "DONE" for a in batch["rollback"])
    assert wait_for(lambda: net_positions(kite, [big.tradingsymbol]) == before, what="the sliced leg flat again")
