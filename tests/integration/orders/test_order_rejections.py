"""An order the broker accepts and then rejects in its RMS check (too little margin): Kite's two
texts in the order record, on the order stream and in the webhook, and the rejection counted."""
from __future__ import annotations

import secrets

import pytest
import requests

from tests.support.metric_series import samples
from tests.support.orders import market_order
from tests.support.ports import free_port
from tests.support.realtime import Socket
from tests.support.waiting import wait_for
from tests.support.webhooks import Receiver

CASH = 50_000  # one short NIFTY option lot needs about ₹1.35 lakh at the paper broker


@pytest.fixture
def short_of_funds(order_stack):
    """A service account of its own whose paper-broker account has ₹50,000 (the session's accounts
    have ₹100 crore and keep it)."""
    from app import accounts as account_service
    from app.core.db import session_scope

    suffix = secrets.token_hex(4)
    account_id = f"rms-{suffix}"
    creds = {"api_key": f"paper-rms-{suffix}", "api_secret": f"secret-{suffix}", "access_token": f"tok-{suffix}"}
    response = requests.post(f"{order_stack.root}/_sim/accounts", json={**creds, "cash": CASH}, timeout=10)
    assert response.status_code == 200 and response.json()["cash"] == CASH, response.text
    with session_scope() as session:
        account_service.add_account(session, account_id, **creds)
    return account_id, creds


def rejections(client) -> dict[str, float]:
    """order_rejections_total by reason, as the web process's /metrics exports it."""
    text = client.get("/metrics").get_data(as_text=True)
    return {dict(labels)["reason"]: value for (name, labels), value in samples(text).items()
            if name == "order_rejections_total"}


def test_rms_rejection_reaches_the_record_stream_webhook_and_metric(
        client, headers, live_server, order_stack, option, short_of_funds):
    account_id, creds = short_of_funds
    admin = headers["admin"]
    hook = Receiver(free_port()).start()
    created = client.post("/advanced/webhooks", headers=admin, json={
        "url": hook.url, "account_id": account_id, "events": ["order_rejected"], "secret": "rms"})
    assert created.status_code == 201, created.get_json()
    sock = Socket(f"{live_server.ws_url}/ws/orders/{account_id}", admin["X-API-Key"])
    try:
        assert sock.next_json()["type"] == "snapshot"
        before = rejections(client)
        assert set(before) == {"margin", "freeze", "market_closed", "other"}

        response = client.post(f"/accounts/{account_id}/orders", headers=admin,
                               json=market_order(option, transaction_type="SELL"))
        assert response.status_code == 202, response.get_json()
        order_id = response.get_json()["id"]

        def rejected():
            record = client.get(f"/orders/{order_id}", headers=admin).get_json()
            return record if record["status"] == "REJECTED" else None
        record = wait_for(rejected, 20, what=f"order {order_id} REJECTED")

        # Accepted (a broker order id), then rejected by the RMS with Kite's two texts, kept as given.
        [at_broker] = [o for o in order_stack.orders(creds["api_key"]) if o["tag"] == record["tag"]]
        assert at_broker["status"] == "REJECTED"
        assert record["broker_order_id"] == at_broker["order_id"] and record["attempts"] == 1
        assert record["status_message"] == at_broker["status_message"]
        assert record["status_message_raw"] == at_broker["status_message_raw"]
        assert record["status_message"].startswith("Insufficient funds. Required margin is ")
        assert record["status_message"].endswith(" Check the orderbook for open orders.")
        assert record["status_message_raw"].startswith("RMS:Margin Exceeds,Required:")
        assert f"Available:{CASH:.2f} for entity account-" in record["status_message_raw"]

        update = sock.wait_for(lambda m: m.get("type") == "order_update" and m["data"]["order_id"] == order_id
                               and m["data"]["status"] == "REJECTED", timeout=10)
        assert update["account_id"] == account_id
        assert update["data"]["status_message"] == record["status_message"]
        assert update["data"]["status_message_raw"] == record["status_message_raw"]

        [delivered] = wait_for(lambda: hook.for_order(order_id), 20, 0.1, what="the order_rejected webhook")
        assert delivered.json["event"] == "order_rejected" and delivered.json["account_id"] == account_id
        assert delivered.json["data"]["status"] == "REJECTED"
        assert delivered.json["data"]["status_message"] == record["status_message"]
        assert delivered.json["data"]["status_message_raw"] == record["status_message_raw"]

        # Counted once, under `margin`.
        after = wait_for(lambda: rejections(client), 10, what="the rejection counted",
                         until=lambda now: now["margin"] > before["margin"])
        assert after == {**before, "margin": before["margin"] + 1}
    finally:
        sock.close()
        client.delete(f"/advanced/webhooks/{created.get_json()['webhook_id']}", headers=admin)
        hook.stop()
