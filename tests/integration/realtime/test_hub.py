"""The hub on its own: one subscription, dispatch by account, reconnection after a Redis outage
(a Redis server of the test's own: `private_redis`, tests/integration/conftest.py)."""
from __future__ import annotations

import json

import redis

from app.realtime.clients import OrderClient, Outbox
from app.realtime.hub import RealtimeHub
from tests.support.waiting import wait_for


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
        wait_for(lambda: len(everyone.outbox) == 2, 5.0, what="both messages in the outbox")

        private_redis.stop()
        wait_for(lambda: not hub.connected, timeout=10, what="the hub to notice the outage")
        assert hub.status()["redis"]["subscribed"] is False and hub.status()["redis"]["last_error"]
        private_redis.start()
        wait_for(lambda: hub.connected, timeout=15, what="the hub to reconnect")
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
