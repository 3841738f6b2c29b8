"""Waiting for the database to change without polling it: block on a Redis channel instead.

The database stays the record. A waiter subscribes *before* its first read, re-reads
after every message that may concern it, and re-reads anyway every `fallback_s`, so
a lost message (Redis restarting) costs latency, never a wrong answer. Polling in a
tight loop instead costs a query every few milliseconds per waiter, which on a busy
machine slows down exactly the updates being waited for.
"""
from __future__ import annotations

import logging
import time

from app.core.redis_client import dedicated_pubsub, get_redis

log = logging.getLogger(__name__)


def batch_channel(batch_id: str) -> str:
    """Where a settled batch is announced to the requests waiting for it (not a client channel)."""
    return f"batches:{batch_id}"


def nudge(channel: str) -> None:
    """Wake the waiters of `channel`; a Redis failure only delays them (they fall back to reading)."""
    try:
        get_redis().publish(channel, b"1")
    except Exception:
        log.warning("wake-up not published", exc_info=True, extra={"channel": channel})


class Waiter:
    """`with Waiter(channel) as waiter: while not done(): waiter.wait(timeout)`.

    `wait` returns on a message whose payload contains `needle` (every message when
    None), after `timeout`, or after `fallback_s`, whichever comes first.
    """

    def __init__(self, channel: str, needle: bytes | None = None, fallback_s: float = 0.25) -> None:
        self.channel = channel
        self.needle = needle
        self.fallback_s = fallback_s
        self._pubsub = None

    def __enter__(self) -> "Waiter":
        try:
            pubsub = dedicated_pubsub()
            pubsub.subscribe(self.channel)
            self._pubsub = pubsub
        except Exception:
            log.warning("wake-ups unavailable; waiting by reading", exc_info=True, extra={"channel": self.channel})
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:
                pass

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, min(timeout, self.fallback_s))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._pubsub is None:
                time.sleep(min(remaining, 0.05))
                return
            try:
                message = self._pubsub.get_message(timeout=remaining)
            except Exception:
                log.warning("wake-up channel lost; waiting by reading", exc_info=True, extra={"channel": self.channel})
                self.__exit__()
                self._pubsub = None
                continue
            if message is None:
                continue
            if self.needle is None or self.needle in (message.get("data") or b""):
                return
