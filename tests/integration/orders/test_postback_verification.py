"""Postbacks are checked against the broker (issue #21): a postback signed with the account's real
api_secret (whoever holds it can sign) may not end an order, or add fills, that the broker's own
order history does not show; a true one still applies at once, without waiting for the reconciler."""
from __future__ import annotations

import hashlib

from tests.support.metric_series import samples
from tests.support.orders import cancel_at_broker, resting_limit_order


def signed(row: dict, secret: str) -> dict:
    checksum = hashlib.sha256((row["order_id"] + row["order_timestamp"] + secret).encode()).hexdigest()
    return {**row, "checksum": checksum}


def verifications(client) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {dict(labels)["outcome"]: value for (name, labels), value in samples(text).items()
            if name == "postback_verifications_total"}


def test_checksummed_postback_the_broker_contradicts_changes_nothing(orders, client, future, accounts):
    placed = orders.place(resting_limit_order(orders.broker, future)).get_json()
    before = orders.wait_status(placed["id"], "OPEN")
    row = orders.broker_orders(before["tag"])[0]
    assert row["status"] == "OPEN" and row["filled_quantity"] == 0
    secret = accounts["primary"]["api_secret"]
    counted = verifications(client)

    claims = [{**row, "status": "COMPLETE", "filled_quantity": row["quantity"], "pending_quantity": 0,
               "average_price": row["price"]},
              {**row, "status": "CANCELLED"},
              {**row, "status": "OPEN", "filled_quantity": future.lot_size, "average_price": row["price"]}]
    for claim in claims:
        response = client.post("/postback/kite", json=signed(claim, secret))
        assert response.status_code == 200 and response.get_json()["applied"] is False, response.get_json()

    after = orders.get(placed["id"]).get_json()
    assert (after["status"], after["filled_quantity"]) == ("OPEN", 0)
    assert len(after["events"]) == len(before["events"])
    assert verifications(client)["refuted"] == counted["refuted"] + len(claims)
    client.delete(f"/orders/{placed['id']}", headers=orders.headers["primary"])  # tidy up


def test_true_final_postback_applies_at_once(orders, client, future, accounts, live_server):
    orders.broker.settings(postback_url="")  # the broker's own postback would race ours
    try:
        placed = orders.place(resting_limit_order(orders.broker, future)).get_json()
        record = orders.wait_status(placed["id"], "OPEN")
        cancel_at_broker(record["broker_order_id"])
        row = orders.broker_orders(record["tag"])[0]
        assert row["status"] == "CANCELLED"
        counted = verifications(client)

        # Kite's 429 (its count of non-order calls holds some our limiter does not see): tried next second.
        consumed = orders.broker.state()["faults_consumed"].get("error_next", 0)
        orders.broker.set_faults(error_next=1, error_status=429)
        response = client.post("/postback/kite", json=signed(row, accounts["primary"]["api_secret"]))
        assert response.status_code == 200 and response.get_json()["applied"] is True
        assert orders.broker.state()["faults_consumed"]["error_next"] == consumed + 1
        assert orders.get(placed["id"]).get_json()["status"] == "CANCELLED"  # no reconciler run needed
        assert verifications(client)["confirmed"] == counted["confirmed"] + 1
    finally:
        orders.broker.clear_faults()
        orders.broker.settings(postback_url=f"{live_server.url}/postback/kite")
