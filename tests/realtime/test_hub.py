"""The hub on its own: one subscription, dispatch by account, reconnection after a Redis outage."""
from __future__ import annotations

import json

import pytest

from tests.support.redis_server import PrivateRedis
import redis

from app.realtime.clients import OrderClient, Outbox
from app.realtime.hub import RealtimeHub
from tests.realtime.conftest import wait_until


@pytest.fixture
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.stop()


def take_texts(client, timeout=3.0) -> list[str]:
    items, _ = client.outbox.take(timeout)
    return [i.text for i in items]


def test_hub_uses_one_subscription_and_survives_a_redis_outage(private_redis):
    hub = RealtimeHub(private_redis.url).start()
    try:
        assert hub.wait_connected()
        mine = OrderClient(endpoint="orders", outbox=Outbox(100, drop_oldest=False), account_id="acc1")
        everyone = OrderClient(endpoint="orders_all", outbox=Outbox(100, drop_oldest=False), account_id=None)
        hub.add(mine)
        hub.add(everyone)
        publisher = redis.Redis.from_url(private_redis.url)
        # One pattern subscription for the whole process, however many clients.
        assert publisher.pubsub_numpat() == 2

        publisher.publish("orders:acc2", json.dumps({"type": "order_update", "account_id": "acc2", "seq": 1}))
        publisher.publish("orders:acc1", json.dumps({"type": "order_update", "account_id": "acc1", "seq": 1}))
        assert [json.loads(t)["account_id"] for t in take_texts(mine)] == ["acc1"]
        wait_until(lambda: len(everyone.outbox) == 2)

        private_redis.stop()
        wait_until(lambda: not hub.connected, timeout=10)
        assert hub.status()["redis"]["subscribed"] is False and hub.status()["redis"]["last_error"]
        private_redis.start()
        wait_until(lambda: hub.connected, timeout=15)
        assert hub.reconnects >= 1

        # Clients are told they may have missed updates, then get live ones again.
        texts = take_texts(mine)
        assert json.loads(texts[0])["type"] == "resync"
        publisher = redis.Redis.from_url(private_redis.url)
        publisher.publish("orders:acc1", json.dumps({"type": "order_update", "account_id": "acc1", "seq": 2}))
        assert json.loads(take_texts(mine)[-1])["seq"] == 2
        assert hub.status()["connections"]["by_account"] == {"acc1": 1}
    finally:
        hub.stop()


def test_outbox_bounds():
    orders = Outbox(2, drop_oldest=False)
    from app.realtime.clients import Outgoing

    assert orders.offer(Outgoing("a")) and orders.offer(Outgoing("b"))
    assert not orders.offer(Outgoing("c")) and orders.overflowed
    ticks = Outbox(2, drop_oldest=True)
    for text in "abcd":
        ticks.offer(Outgoing(text))
    items, dropped = ticks.take(0)
    assert [i.text for i in items] == ["c", "d"] and dropped == 2 and ticks.dropped_total == 2
    ticks.reply(Outgoing("pong"))
    assert [i.text for i in ticks.take(0)[0]] == ["pong"]
