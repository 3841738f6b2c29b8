"""Wake-ups on Redis pub/sub for code that waits on the database (app/core/wakeups.py)."""
from __future__ import annotations

import threading
import time

import redis

from app.core import wakeups
from tests.support.ports import free_port


def nudge_later(channel: str, payload: bytes, delay_s: float = 0.1) -> threading.Thread:
    def send():
        time.sleep(delay_s)
        wakeups.get_redis().publish(channel, payload)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_message_with_the_needle_wakes_the_waiter(app):
    with app.app_context(), wakeups.Waiter("test:wake:1", needle=b"order-42", fallback_s=30) as waiter:
        thread = nudge_later("test:wake:1", b'{"order_id": "order-42"}')
        started = time.monotonic()
        waiter.wait(30)
        thread.join()
        assert time.monotonic() - started < 10  # woken, not timed out


def test_other_messages_do_not_end_the_wait(app):
    with app.app_context(), wakeups.Waiter("test:wake:2", needle=b"order-42", fallback_s=30) as waiter:
        thread = nudge_later("test:wake:2", b'{"order_id": "order-7"}', delay_s=0.05)
        started = time.monotonic()
        waiter.wait(0.4)
        thread.join()
        assert time.monotonic() - started >= 0.4


def test_nudge_wakes_every_waiter_of_the_channel(app):
    channel = wakeups.batch_channel("b-wake")
    with app.app_context(), wakeups.Waiter(channel, fallback_s=30) as first, \
            wakeups.Waiter(channel, fallback_s=30) as second:
        woken = []
        threads = [threading.Thread(target=lambda w=w: (w.wait(30), woken.append(w))) for w in (first, second)]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        wakeups.nudge(channel)
        for thread in threads:
            thread.join(10)
        assert len(woken) == 2


def test_without_redis_the_wait_falls_back_to_sleeping(monkeypatch):
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    monkeypatch.setattr(wakeups, "get_redis", lambda: dead)
    monkeypatch.setattr(wakeups, "dedicated_pubsub", lambda: dead.pubsub(ignore_subscribe_messages=True))
    wakeups.nudge("test:wake:dead")  # logged, not raised
    with wakeups.Waiter("test:wake:dead", fallback_s=0.2) as waiter:
        started = time.monotonic()
        waiter.wait(5)
        assert 0.04 <= time.monotonic() - started < 1.0  # one fallback interval, then the caller re-reads
