"""Fan-out properties: a slow client never delays a fast one; the tick relay filters and drops oldest."""
from __future__ import annotations

import json
import secrets
import socket
import threading
import time

import pytest
import websocket

from app.orders import updates as order_updates
from app.realtime.hub import get_hub
from app.core.redis_client import get_redis
from tests.support.realtime import Socket
from tests.support.waiting import wait_for

SMALL_RCVBUF = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]


@pytest.fixture
def hub(app):
    relay = get_hub(app.config["SETTINGS"].redis_url)
    assert relay.wait_connected()
    limits = relay.order_queue_limit, relay.tick_buffer_limit, relay.send_buffer_bytes
    relay.send_buffer_bytes = 16 * 1024  # stuck clients block the server's sends after little data
    yield relay
    relay.order_queue_limit, relay.tick_buffer_limit, relay.send_buffer_bytes = limits


def slow_socket(url: str, key: str) -> websocket.WebSocket:
    """A client that reads nothing, with a tiny receive buffer so the server's sends block soon."""
    return websocket.create_connection(url, header=[f"X-API-Key: {key}"], timeout=5, sockopt=SMALL_RCVBUF)


def count_for(relay, account_id: str) -> int:
    return relay.status()["connections"]["by_account"].get(account_id, 0)


def test_slow_order_client_is_disconnected_without_delaying_a_fast_one(live_server, headers, hub):
    hub.order_queue_limit = 50
    account = f"slow-{secrets.token_hex(4)}"  # its own channel: other tests' sockets see none of this
    admin_key = headers["admin"]["X-API-Key"]
    slow = slow_socket(f"{live_server.ws_url}/ws/orders/{account}", admin_key)
    fast = Socket(f"{live_server.ws_url}/ws/orders/{account}", admin_key)
    assert fast.next_json()["type"] == "snapshot"
    wait_for(lambda: count_for(hub, account) == 2, 5.0, what="two clients of the account")
    disconnected_before = hub.slow_disconnects

    padding = "x" * 8_000  # with small socket buffers a client that reads nothing is stuck soon
    total = 200
    seqs: list[int] = []

    def read_fast():  # the fast client reads while updates are published, as a live client does
        for _ in range(total):
            seqs.append(fast.wait_for(lambda m: m.get("type") == "order_update", timeout=10)["seq"])

    reader = threading.Thread(target=read_fast)
    reader.start()
    started = time.monotonic()
    for n in range(total):
        order_updates.publish(account, {"order_id": f"o{n}", "status": "OPEN", "padding": padding})
        if n % 5 == 4:
            time.sleep(0.005)  # a brisk but steady rate: a reading client keeps up, a stuck one cannot
    reader.join(15)
    elapsed = time.monotonic() - started

    assert seqs == list(range(seqs[0], seqs[0] + total))  # every update, in order, no gap
    assert elapsed < 10
    wait_for(lambda: count_for(hub, account) == 1, timeout=10, what="the slow client disconnected")
    assert hub.slow_disconnects == disconnected_before + 1

    # The slow client, reading at last, finds its connection closed (1013 when the close frame got through).
    slow.settimeout(5)
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
        for _ in range(total + 5):
            frame = slow.recv_data_frame(True)[1]
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                assert int.from_bytes(frame.data[:2], "big") == 1013
                raise websocket.WebSocketConnectionClosedException("closed with 1013")
    slow.close()
    # The fast client is still live.
    order_updates.publish(account, {"order_id": "after", "status": "OPEN"})
    assert fast.wait_for(lambda m: m.get("type") == "order_update")["data"]["order_id"] == "after"
    fast.close()


def tick_batch(underlying: str, tokens: list[int], kind: str = "options", padding: str = "") -> dict:
    return {"type": "ticks", "channel": f"ticker:{underlying}:{kind}", "underlying": underlying.upper(),
            "kind": kind, "published_at": "2025-10-31T09:15:30.123Z", "count": len(tokens),
            "ticks": [{"instrument_token": t, "last_price": 100.5 + i, "padding": padding} for i, t in enumerate(tokens)]}


def publish_ticks(batch: dict) -> None:
    get_redis().publish(batch["channel"], json.dumps(batch))


def test_tick_relay_filters_by_token_and_underlying(live_server, headers, hub):
    underlying = f"u{secrets.token_hex(4)}"
    a, b, c = (secrets.randbelow(10**9) + 10**9 for _ in range(3))
    key = headers["other"]["X-API-Key"]
    by_token = Socket(f"{live_server.ws_url}/ws/ticks?tokens={b}", key)
    by_underlying = Socket(f"{live_server.ws_url}/ws/ticks?underlying={underlying}", key)
    by_message = Socket(f"{live_server.ws_url}/ws/ticks", key)
    for sock in (by_token, by_underlying, by_message):
        assert sock.next_json()["type"] == "subscribed"
    by_message.ws.send(json.dumps({"action": "subscribe", "tokens": [c]}))
    assert by_message.next_json() == {"type": "subscribed", "action": "subscribe", "underlying": [], "tokens": [c],
                                      "chains": [], "total": {"tokens": 1, "underlying": 0, "chains": 0}}
    by_message.ws.send(json.dumps({"action": "subscribe", "tokens": ["nope"]}))
    assert by_message.next_json()["type"] == "error"

    publish_ticks(tick_batch(underlying, [a, b, c]))
    is_mine = lambda m: m.get("type") == "ticks" and m["underlying"] == underlying.upper()  # noqa: E731
    only_b = by_token.wait_for(is_mine)
    assert [t["instrument_token"] for t in only_b["ticks"]] == [b] and only_b["count"] == 1
    assert only_b["channel"] == f"ticker:{underlying}:options" and only_b["kind"] == "options"
    whole = by_underlying.wait_for(is_mine)
    assert [t["instrument_token"] for t in whole["ticks"]] == [a, b, c]
    assert [t["instrument_token"] for t in by_message.wait_for(is_mine)["ticks"]] == [c]

    # A batch with none of a client's tokens is not sent to it at all.
    publish_ticks(tick_batch(underlying, [a], kind="underlying"))
    assert [t["instrument_token"] for t in by_underlying.wait_for(is_mine)["ticks"]] == [a]
    assert not [m for m in by_token.collect(0.3) if is_mine(m)]
    for sock in (by_token, by_underlying, by_message):
        sock.close()


def test_subscription_answers_name_what_changed_and_the_cap_holds_for_the_socket(live_server, headers):
    sock = Socket(f"{live_server.ws_url}/ws/ticks?tokens=1,2,3&underlying=nifty", headers["other"]["X-API-Key"])
    assert sock.next_json() == {"type": "subscribed", "action": "subscribe", "underlying": ["nifty"],
                                "tokens": [1, 2, 3], "chains": [], "total": {"tokens": 3, "underlying": 1, "chains": 0}}
    sock.ws.send(json.dumps({"action": "unsubscribe", "tokens": [1, 2], "underlying": ["nifty"]}))
    assert sock.next_json() == {"type": "subscribed", "action": "unsubscribe", "underlying": ["nifty"],
                                "tokens": [1, 2], "chains": [], "total": {"tokens": 1, "underlying": 0, "chains": 0}}
    sock.ws.send(json.dumps({"action": "subscribe", "tokens": list(range(1001, 1001 + 4999))}))
    # The answer names the 4,999, once.
    assert sock.next_json()["total"] == {"tokens": 5000, "underlying": 0, "chains": 0}
    sock.ws.send(json.dumps({"action": "subscribe", "tokens": [7]}))
    refused = sock.next_json()
    assert refused["type"] == "error" and "at most 5000 tokens per connection" in refused["message"]
    sock.ws.send(json.dumps({"action": "subscribe", "tokens": [3]}))  # already held: no new token
    assert sock.next_json()["total"] == {"tokens": 5000, "underlying": 0, "chains": 0}
    sock.ws.send(json.dumps({"action": "unsubscribe", "tokens": [3]}))
    sock.next_json()
    sock.ws.send(json.dumps({"action": "subscribe", "tokens": [7]}))
    assert sock.next_json()["total"] == {"tokens": 5000, "underlying": 0, "chains": 0}
    sock.close()


def test_bad_tick_query_is_422_before_the_socket_opens(live_server, headers):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{live_server.ws_url}/ws/ticks?tokens=abc", header=[
            f"X-API-Key: {headers['other']['X-API-Key']}"], timeout=5)
    assert refused.value.status_code == 422


def test_slow_tick_client_drops_its_oldest_batches_without_slowing_others(live_server, headers, hub):
    hub.tick_buffer_limit = 20
    underlying = f"u{secrets.token_hex(4)}"
    key = headers["admin"]["X-API-Key"]
    slow = websocket.create_connection(f"{live_server.ws_url}/ws/ticks?underlying={underlying}",
                                       header=[f"X-API-Key: {key}"], timeout=10, sockopt=SMALL_RCVBUF)
    assert json.loads(slow.recv())["type"] == "subscribed"  # sent once the relay knows the client
    fast = Socket(f"{live_server.ws_url}/ws/ticks?underlying={underlying}", key)
    assert fast.next_json()["type"] == "subscribed"
    dropped_before = hub.tick_batches_dropped
    total, padding = 150, "y" * 8_000
    got: list[int] = []

    def read_fast():
        for _ in range(total):
            got.append(fast.wait_for(lambda m: m.get("type") == "ticks", timeout=10)["ticks"][0]["instrument_token"])

    reader = threading.Thread(target=read_fast)
    reader.start()
    for n in range(total):
        publish_ticks(tick_batch(underlying, [n + 1], padding=padding))
        if n % 2 == 1:
            time.sleep(0.005)  # ~400 batches/s: a reading client keeps up, a stuck one cannot
    reader.join(15)
    assert got == list(range(1, total + 1))
    wait_for(lambda: hub.tick_batches_dropped > dropped_before, 5.0, what="a dropped tick batch")

    # Reading at last, the slow client is still connected: it is told how many were dropped,
    # and what it gets ends with the newest batch.
    seen_tokens, dropped_notices = [], []
    slow.settimeout(5)
    while not seen_tokens or seen_tokens[-1] != total:
        message = json.loads(slow.recv())
        if message["type"] == "dropped":
            dropped_notices.append(message["count"])
        elif message["type"] == "ticks":
            seen_tokens.append(message["ticks"][0]["instrument_token"])
    assert sum(dropped_notices) > 0
    assert len(seen_tokens) + sum(dropped_notices) == total
    assert seen_tokens == sorted(seen_tokens)
    slow.close()
    fast.close()
