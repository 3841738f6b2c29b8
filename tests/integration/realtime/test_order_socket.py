"""The order stream: snapshot first, live updates with seq, isolation between accounts, auth."""
from __future__ import annotations

from decimal import Decimal

import pytest
import websocket

from tests.support.realtime import new_order, transition
from tests.support.waiting import wait_for


def test_snapshot_then_complete_update(open_socket, accounts):
    open_order = new_order("primary", "OPEN")
    sock = open_socket("/ws/orders/primary", "primary")

    snapshot = sock.next_json()
    assert snapshot["type"] == "snapshot" and snapshot["account_id"] == "primary"
    assert isinstance(snapshot["seq"], int) and snapshot["timestamp"].endswith("Z")
    assert open_order.id in [o["order_id"] for o in snapshot["orders"]]
    assert all(o["status"] not in ("COMPLETE", "CANCELLED", "REJECTED", "DEAD_LETTER") for o in snapshot["orders"])

    transition(open_order.id, "COMPLETE", filled_quantity=50, average_price=Decimal("19500.25"))
    update = sock.wait_for(lambda m: m.get("type") == "order_update" and m["data"]["order_id"] == open_order.id)
    assert update["account_id"] == "primary"
    assert update["seq"] > snapshot["seq"]
    assert update["timestamp"].endswith("Z")
    data = update["data"]
    assert (data["status"], data["filled_quantity"], data["average_price"]) == ("COMPLETE", 50, 19500.25)
    assert data["broker_order_id"] == open_order.broker_order_id


def test_seq_rises_by_one_per_update_of_the_account(open_socket, accounts):
    order = new_order("other", "OPEN")
    sock = open_socket("/advanced/ws/orders/other", "other")  # the old ticker service's path
    snapshot = sock.next_json()
    transition(order.id, "OPEN", filled_quantity=10)
    transition(order.id, "COMPLETE", filled_quantity=50)
    seen = [sock.wait_for(lambda m: m.get("type") == "order_update")["seq"] for _ in range(2)]
    assert seen[0] >= snapshot["seq"] + 1 and seen[1] == seen[0] + 1


def test_another_accounts_socket_sees_nothing_of_it(open_socket, accounts):
    watcher = open_socket("/ws/orders/other", "other")
    assert watcher.next_json()["type"] == "snapshot"
    mine = open_socket("/ws/orders/primary", "primary")
    mine.next_json()
    order = new_order("primary", "OPEN")
    transition(order.id, "COMPLETE", filled_quantity=50)
    mine.wait_for(lambda m: m.get("type") == "order_update" and m["data"]["order_id"] == order.id)
    leaked = [m for m in watcher.collect(0.5) if m.get("type") == "order_update"]
    assert all(m["account_id"] == "other" for m in leaked)
    assert order.id not in [m["data"]["order_id"] for m in leaked]


def test_admin_socket_sees_every_account(open_socket, accounts):
    admin = open_socket("/ws/orders", "admin")
    snapshot = admin.next_json()
    assert snapshot["type"] == "snapshot" and snapshot["account_id"] == "*"
    assert {"primary", "other"} <= set(snapshot["seq"])
    first, second = new_order("primary"), new_order("other")
    transition(first.id, "CANCELLED")
    transition(second.id, "COMPLETE", filled_quantity=50)
    wanted = {first.id, second.id}
    got = set()
    while got != wanted:
        message = admin.wait_for(lambda m: m.get("type") == "order_update" and m["data"]["order_id"] in wanted)
        got.add(message["data"]["order_id"])


@pytest.mark.parametrize("path, role", [("/ws/orders/primary", "other"), ("/ws/orders", "primary"),
                                        ("/advanced/ws/orders/other", "primary")])
def test_a_key_without_the_account_is_refused_before_the_socket_opens(open_socket, path, role):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        open_socket(path, role)
    assert refused.value.status_code == 403
    assert b'"code": "forbidden"' in refused.value.resp_body or b'"code":"forbidden"' in refused.value.resp_body


def test_no_key_is_401(open_socket):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        open_socket("/ws/orders/primary", None)
    assert refused.value.status_code == 401


def test_api_key_in_query_string(live_server, headers, accounts):
    ws = websocket.create_connection(f"{live_server.ws_url}/ws/orders/primary?api_key={headers['primary']['X-API-Key']}",
                                     timeout=5)
    try:
        assert '"type": "snapshot"' in ws.recv()
    finally:
        ws.close()


def test_ping_pong(open_socket, accounts):
    sock = open_socket("/ws/orders/primary", "primary")
    sock.next_json()
    sock.ws.send("ping")
    sock.ws.settimeout(5)
    while (text := sock.ws.recv()) != "pong":
        assert text.startswith("{")  # an update from a concurrent test may come first


def test_status_counts_connections(client, headers, open_socket, accounts):
    sock = open_socket("/ws/orders/primary", "primary")
    sock.next_json()
    admin = client.get("/ws/status", headers=headers["admin"])
    assert admin.status_code == 200
    body = admin.get_json()
    assert body["redis"]["subscribed"] is True and body["status"] == "ok"
    assert body["connections"]["by_account"]["primary"] >= 1
    assert body["connections"]["by_endpoint"]["orders"] >= 1

    # The series exists at 0 from the start (app/realtime/metrics.py): the open socket must count.
    from prometheus_client.parser import text_string_to_metric_families

    gauge = {tuple(s.labels.items()): s.value for f in text_string_to_metric_families(client.get("/metrics").get_data(
        as_text=True)) if f.name == "active_websocket_connections" for s in f.samples}
    assert gauge[(("endpoint", "orders"),)] >= 1

    other = client.get("/ws/status", headers=headers["other"]).get_json()
    assert "primary" not in other["connections"]["by_account"]
    assert client.get("/ws/status").status_code == 401

    sock.close()
    wait_for(lambda: client.get("/ws/status", headers=headers["primary"]).get_json()
             ["connections"]["by_account"].get("primary", 0) == 0, 5.0, what="the closed socket to be counted out")


def test_plain_http_get_on_a_socket_route_is_a_4xx(client, headers):
    response = client.get("/ws/orders/primary", headers=headers["primary"])
    assert 400 <= response.status_code < 500
    assert "error" in response.get_json()
