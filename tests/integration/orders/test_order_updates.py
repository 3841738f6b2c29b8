"""Order-update messages: numbered per account, and published in number order by concurrent workers."""
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from app.orders import updates as order_updates
from app.core.redis_client import get_redis


def test_concurrent_publishers_publish_in_sequence_order(test_env):
    account = f"seq-{uuid.uuid4().hex[:8]}"
    pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(order_updates.channel(account))
    time.sleep(0.1)

    def publish_many(worker: int) -> None:
        for n in range(50):
            assert order_updates.publish(account, {"order_id": f"{worker}-{n}", "status": "OPEN"}) is not None

    with ThreadPoolExecutor(8) as pool:  # like several worker processes publishing at once
        list(pool.map(publish_many, range(8)))

    seqs, deadline = [], time.monotonic() + 10
    while len(seqs) < 400 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message:
            body = json.loads(message["data"])
            assert body["type"] == "order_update" and body["account_id"] == account
            seqs.append(body["seq"])
    pubsub.close()
    assert seqs == list(range(1, 401))  # every number once, in order: a gap always means a loss
