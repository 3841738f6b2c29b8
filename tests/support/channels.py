"""Listening to Redis pub/sub channels (the stream's tick batches) with arrival times."""
from __future__ import annotations

import json
import time

import redis


class ChannelListener:
    """Collects messages of Redis channels (pattern) with their arrival time."""

    def __init__(self, redis_url: str, pattern: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(pattern)

    def collect(self, seconds: float) -> list[tuple[float, str, dict]]:
        got, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.05)
            if message and message["type"] == "pmessage":
                got.append((time.monotonic(), message["channel"].decode(), json.loads(message["data"])))
        return got

    def first(self, predicate, timeout: float) -> tuple[float, str, dict] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.05)
            if message and message["type"] == "pmessage":
                item = (time.monotonic(), message["channel"].decode(), json.loads(message["data"]))
                if predicate(item):
                    return item
        return None

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()
