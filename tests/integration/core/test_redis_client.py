"""The shared Redis pool: bounded, and callers wait for a connection instead of failing."""
from __future__ import annotations

import threading
import time

from app.core.redis_client import dedicated_pubsub, get_redis


def test_more_concurrent_callers_than_connections_wait_instead_of_failing(app, settings_override):
    settings_override(redis_max_connections=3)
    client = get_redis()
    assert client.connection_pool.max_connections == 3
    done, errors = [], []

    def call(i: int) -> None:
        try:
            client.blpop([f"test:pool:empty:{i}"], timeout=0.2)  # holds its connection for 0.2 s
            done.append(i)
        except Exception as exc:  # with a non-blocking pool: "Too many connections"
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(done) == 12
    assert time.monotonic() - started >= 0.6  # 12 calls through 3 connections took turns


def test_a_subscriber_does_not_take_a_connection_of_the_shared_pool(app, settings_override):
    settings_override(redis_max_connections=1)
    client = get_redis()
    listeners = [dedicated_pubsub() for _ in range(3)]
    try:
        for i, pubsub in enumerate(listeners):
            pubsub.subscribe(f"test:pool:channel:{i}")
        client.set("test:pool:key", "1")  # the pool's only connection is still free for commands
        assert client.get("test:pool:key") == b"1"
    finally:
        for pubsub in listeners:
            pubsub.close()
