"""An order placed through REST reaches a WebSocket client and a signed webhook, from the real worker."""
from __future__ import annotations

from app.webhooks.signing import verify
from tests.support.ports import free_port
from tests.support.waiting import WaitTimeout, wait_for
from tests.support.webhooks import Receiver


def test_rest_order_reaches_socket_and_webhook(client, headers, open_socket, instruments, celery_worker, live_server):
    option = sorted((i for i in instruments.all() if i.segment == "NFO-OPT" and i.instrument_type == "CE"),
                    key=lambda i: i.strike)[0]
    hook = Receiver(free_port()).start()
    created = client.post("/advanced/webhooks", headers=headers["primary"], json={
        "url": hook.url, "account_id": "primary", "events": ["order_placed", "order_completed"], "secret": "e2e"})
    assert created.status_code == 201
    try:
        sock = open_socket("/ws/orders/primary", "primary")
        snapshot = sock.next_json()
        assert snapshot["type"] == "snapshot"

        response = client.post("/accounts/primary/orders", headers=headers["primary"], json={
            "exchange": option.exchange, "tradingsymbol": option.tradingsymbol, "transaction_type": "BUY",
            "quantity": option.lot_size, "product": "NRML", "order_type": "MARKET"})
        assert response.status_code == 202, response.get_json()
        order_id = response.get_json()["id"]

        seen = []

        def completed(message):
            if message.get("type") == "order_update" and message["data"]["order_id"] == order_id:
                seen.append(message["data"]["status"])
                return message["data"]["status"] == "COMPLETE"
            return False

        try:
            done = sock.wait_for(completed, timeout=30)
        except WaitTimeout:
            record = client.get(f"/orders/{order_id}", headers=headers["primary"]).get_json()
            raise AssertionError(f"no COMPLETE on the socket; saw {seen}; REST says {record['status']}: "
                                 f"{[e['to_status'] for e in record['events']]}")
        assert done["account_id"] == "primary" and done["seq"] > snapshot["seq"]
        assert done["data"]["filled_quantity"] == option.lot_size and done["data"]["broker_order_id"]

        got = wait_for(lambda: hook.for_order(order_id), 20, 0.1, what="both webhook events",
                       until=lambda r: len(r) >= 2)
        assert sorted(r.json["event"] for r in got) == ["order_completed", "order_placed"]
        for request in got:
            assert verify("e2e", request.headers["X-Webhook-Timestamp"], request.body,
                          request.headers["X-Webhook-Signature"])
    finally:
        client.delete(f"/advanced/webhooks/{created.get_json()['webhook_id']}", headers=headers["admin"])
        hook.stop()
