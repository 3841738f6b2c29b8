"""Chain watchers end to end: option ticks batched by the real TickBatcher, published to Redis, relayed by
the live web app to real WebSocket clients, each getting only what it watches."""
from __future__ import annotations

import json
import secrets
from datetime import date

import pytest
import requests
import websocket

from app.core.redis_client import get_redis
from app.realtime.clients import MAX_CHAINS
from app.realtime.hub import get_hub
from tests.support.realtime import Socket
from tests.support.stream_frames import INDICES, NFO, frame, ltp_packet, token
from workers.stream import frames
from workers.stream.batcher import TickBatcher
from workers.stream.instruments import InstrumentBook, OptionMeta, UnderlyingTokens
from workers.stream.publisher import RedisPublisher

NEAR, FAR = date(2031, 1, 30), date(2031, 2, 27)


class Market:
    """Two underlyings of the test's own (other tests' traffic never matches), NIFTY-like with two expiries."""

    def __init__(self) -> None:
        suffix = secrets.token_hex(3).upper()
        self.name, self.other = f"U{suffix}", f"V{suffix}"
        base = secrets.randbelow(10**6) * 16 + 10**5
        self.spot, self.future, self.other_spot = token(base, INDICES), token(base + 1, NFO), token(base + 2, INDICES)
        self.near = [token(base + 10 + i, NFO) for i in range(3)]
        self.far = [token(base + 20 + i, NFO) for i in range(2)]
        self.other_near = [token(base + 30, NFO)]
        options = {}
        for tokens, name, expiry in ((self.near, self.name, NEAR), (self.far, self.name, FAR),
                                     (self.other_near, self.other, NEAR)):
            for i, tok in enumerate(tokens):
                options[tok] = OptionMeta(tok, name, 100.0 * (i + 1), expiry, True, 50, f"{name}{tok}CE")
        self.book = InstrumentBook(options, {self.name: UnderlyingTokens(self.name, self.spot, (self.future,), (NEAR,)),
                                             self.other: UnderlyingTokens(self.other, self.other_spot)})
        # Published as the stream publishes (its latest-ticks hash kept apart from the shared one).
        publisher = RedisPublisher(get_redis(), latest_key=f"test:chains:{suffix}:latest")
        self.batcher = TickBatcher(publisher, self.book, window_ms=100)

    def tick_everything(self) -> dict:
        tokens = [self.spot, self.future, self.other_spot, *self.near, *self.far, *self.other_near]
        self.batcher.add(frames.decode_frame(frame([ltp_packet(t, 100_00 + i) for i, t in enumerate(tokens)])))
        return self.batcher.flush().chains


@pytest.fixture
def relay(app):
    hub = get_hub(app.config["SETTINGS"].redis_url)
    assert hub.wait_connected()
    return hub


def ticks_of(message: dict) -> list[int]:
    return [t["instrument_token"] for t in message["ticks"]]


def test_a_chain_watcher_gets_exactly_its_chain_and_its_underlying(live_server, headers, relay):
    market = Market()
    key = headers["other"]["X-API-Key"]
    near = f"{market.name}:{NEAR}"
    watcher = Socket(f"{live_server.ws_url}/ws/ticks?chain={near}", key)
    assert watcher.next_json() == {"type": "subscribed", "action": "subscribe", "underlying": [], "tokens": [],
                                   "chains": [near], "total": {"tokens": 0, "underlying": 0, "chains": 1}}
    by_message = Socket(f"{live_server.ws_url}/ws/ticks", key)  # watches the far chain, by a message
    by_message.next_json()
    by_message.ws.send(json.dumps({"action": "subscribe", "chains": [f"{market.name.lower()}:{FAR}"]}))
    assert by_message.next_json()["chains"] == [f"{market.name}:{FAR}"]
    by_token = Socket(f"{live_server.ws_url}/ws/ticks?tokens={market.far[1]},{market.other_near[0]}", key)
    by_token.next_json()
    whole = Socket(f"{live_server.ws_url}/ws/ticks?underlying={market.name.lower()}", key)
    whole.next_json()

    assert market.tick_everything() == {near: 3, f"{market.name}:{FAR}": 2, f"{market.other}:{NEAR}": 1}
    mine = lambda m: m.get("type") == "ticks" and m["underlying"] in (market.name, market.other)  # noqa: E731
    got = [watcher.wait_for(mine), watcher.wait_for(mine)]
    got += [m for m in watcher.collect(0.5) if mine(m)]  # nothing else: not the far chain, not the other underlying
    by_kind = {m["kind"]: m for m in got}
    assert len(got) == 2 and set(by_kind) == {"options", "underlying"}
    assert by_kind["options"]["expiry"] == NEAR.isoformat() and ticks_of(by_kind["options"]) == market.near
    assert by_kind["options"]["channel"] == f"ticker:{market.name.lower()}:options"
    assert sorted(ticks_of(by_kind["underlying"])) == sorted([market.spot, market.future])  # spot and futures

    far = [by_message.wait_for(mine), by_message.wait_for(mine)] + [m for m in by_message.collect(0.3) if mine(m)]
    assert sorted((m["kind"], m.get("expiry")) for m in far) == [("options", FAR.isoformat()), ("underlying", None)]
    filtered = [by_token.wait_for(mine), by_token.wait_for(mine)] + [m for m in by_token.collect(0.3) if mine(m)]
    assert sorted(ticks_of(m)[0] for m in filtered) == sorted([market.far[1], market.other_near[0]])
    assert all(m["count"] == 1 for m in filtered)
    everything = [whole.wait_for(mine) for _ in range(3)] + [m for m in whole.collect(0.3) if mine(m)]
    assert sorted(m.get("expiry") or "-" for m in everything) == ["-", NEAR.isoformat(), FAR.isoformat()]

    # Unsubscribed: nothing more of that chain, nor of its underlying.
    watcher.ws.send(json.dumps({"action": "unsubscribe", "chains": [near]}))
    assert watcher.wait_for(lambda m: m.get("type") == "subscribed")["total"]["chains"] == 0
    market.tick_everything()
    assert [m for m in watcher.collect(0.5) if mine(m)] == []
    status = requests.get(f"{live_server.url}/ws/status", headers=headers["admin"], timeout=5).json()
    assert status["tick_subscriptions"]["chains"] >= 1 and status["tick_subscriptions"]["chain_watchers"] >= 1
    for sock in (watcher, by_message, by_token, whole):
        sock.close()


def test_bad_chains_are_refused(live_server, headers):
    key = headers["other"]["X-API-Key"]
    for query in ("chain=NIFTY", "chain=NIFTY:2031-02-30", "chain=" + ",".join(
            f"NIFTY:2031-01-{d:02d}" for d in range(1, MAX_CHAINS + 2))):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(f"{live_server.ws_url}/ws/ticks?{query}", header=[f"X-API-Key: {key}"],
                                        timeout=5)
        assert refused.value.status_code == 422
    sock = Socket(f"{live_server.ws_url}/ws/ticks?chain=NIFTY:2031-01-30", key)
    sock.next_json()
    sock.ws.send(json.dumps({"action": "subscribe", "chains": ["NIFTY/2031-01-30"]}))
    error = sock.next_json()
    assert error["type"] == "error" and "not a chain" in error["message"]
    # The cap holds for the socket's whole subscription, however many messages built it.
    sock.ws.send(json.dumps({"action": "subscribe", "chains": [f"BANKNIFTY:2031-03-{d:02d}"
                                                               for d in range(1, MAX_CHAINS)]}))
    assert sock.next_json()["total"]["chains"] == MAX_CHAINS
    sock.ws.send(json.dumps({"action": "subscribe", "chains": ["FINNIFTY:2031-01-30"]}))
    refused = sock.next_json()
    assert refused["type"] == "error" and f"at most {MAX_CHAINS} chains per connection" in refused["message"]
    sock.close()
