"""Publish tick batches to Redis behind a circuit breaker.

While Redis is down the stream must keep its broker connections and keep
decoding: publishing fails fast (short socket timeouts, no client retries),
the breaker opens after a few consecutive failures and batches are dropped
without touching the network. After ``reset_timeout_s`` one batch is let
through as a probe (half-open); success closes the breaker, failure re-opens it.
"""
from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from typing import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from workers.stream import metrics, resp

log = logging.getLogger(__name__)

# Hash of the newest tick per instrument: field = instrument token (decimal
# string), value = the JSON tick exactly as published (Greeks included for
# options). The web process serves GET /option-chain from it with HMGET.
LATEST_TICKS_KEY = "ticks:latest"


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class PublishBreaker:
    def __init__(self, failure_threshold: int = 3, reset_timeout_s: float = 2.0, clock=time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self.state = BreakerState.CLOSED
        metrics.BREAKER_STATE.set(self.state)

    def allow(self) -> bool:
        """May a call go through now? In OPEN, the first call after the reset
        timeout becomes the half-open probe."""
        with self._lock:
            if self.state is BreakerState.OPEN:
                if self._clock() - self._opened_at < self.reset_timeout_s:
                    return False
                self._set(BreakerState.HALF_OPEN)
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            if self.state is not BreakerState.CLOSED:
                log.info("Redis publish breaker closed")
                self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self.state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                if self.state is not BreakerState.OPEN:
                    log.warning("Redis publish breaker opened after %d failure(s)", self._failures)
                    metrics.BREAKER_OPENED.inc()
                self._opened_at = self._clock()
                self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self.state = state
        metrics.BREAKER_STATE.set(state)


class PublishResult(enum.Enum):
    PUBLISHED = "published"
    BREAKER_OPEN = "breaker_open"  # dropped without trying
    REDIS_ERROR = "redis_error"  # tried and failed


class RedisPublisher:
    """One pipeline round trip per batch: every channel's PUBLISH plus the
    HSET of the latest ticks."""

    def __init__(self, client: redis.Redis, breaker: PublishBreaker | None = None,
                 latest_key: str = LATEST_TICKS_KEY) -> None:
        self.client = client
        self.breaker = breaker or PublishBreaker()
        self.latest_key = latest_key
        self.published_batches = 0
        self.dropped_batches = 0

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 0.5, **kwargs) -> "RedisPublisher":
        # No client-side retries: redis-py's default backoff would stall the
        # stream for seconds per batch while Redis is down.
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0), retry_on_error=[], health_check_interval=0,
        )
        return cls(client, **kwargs)

    def publish(self, messages: dict[str, str | bytes] | list[tuple[str, str | bytes]],
                latest: dict[int, str | bytes] | None = None) -> PublishResult:
        """`messages`: channel -> payload, or (channel, payload) pairs (a channel may carry several:
        the batcher publishes one message per option chain on its underlying's options channel)."""
        if not self.breaker.allow():
            self.dropped_batches += 1
            return PublishResult.BREAKER_OPEN
        pairs = list(messages.items()) if isinstance(messages, dict) else messages
        try:
            packed = resp.pack(pairs, self.latest_key, latest)
            if packed is not None:
                self._send(*packed)
            else:
                pipe = self.client.pipeline(transaction=False)
                for channel, payload in pairs:
                    pipe.publish(channel, payload)
                if latest:
                    pipe.hset(self.latest_key, mapping=latest)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self.dropped_batches += 1
            self.breaker.record_failure()
            log.debug("publish failed: %s", exc)
            return PublishResult.REDIS_ERROR
        self.breaker.record_success()
        self.published_batches += 1
        return PublishResult.PUBLISHED

    def _send(self, packed: bytes, commands: int) -> None:
        """What a redis-py pipeline does with its packed commands: one write, then every reply read
        (an error reply raised once all are read, so the connection stays in step)."""
        pool = self.client.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command([packed], check_health=False)  # a list of chunks
            error = None
            for _ in range(commands):
                try:
                    connection.read_response()
                except redis.ResponseError as exc:
                    error = error or exc
        except BaseException:
            connection.disconnect()  # replies may be left unread: never reuse it
            raise
        finally:
            pool.release(connection)
        if error is not None:
            raise error


class PublishStage:
    """Publishes on a thread of its own, so the pump decodes and builds the next batch while Redis
    takes this one (at market scale a batch is tens of megabytes: the socket writes are a third
    of the pump's time, and they wait without the GIL).

    At most `max_batches` wait; the pump blocks on a full stage (Redis is then the bottleneck, and
    nothing is dropped silently). Batches that wait together go out in one pipeline, and their
    `ticks:latest` writes are merged: only the newest text of each instrument is written.
    `on_done(result)` runs on the stage's thread once its batch is published or dropped.
    """

    def __init__(self, publisher: RedisPublisher, max_batches: int = 4) -> None:
        self.publisher = publisher
        self._queue: "queue.Queue[tuple | None]" = queue.Queue(maxsize=max_batches)
        self._thread = threading.Thread(target=self._run, name="stream-publisher", daemon=True)
        self._thread.start()

    def publish(self, messages, latest: dict | None, on_done: Callable[[PublishResult], None]) -> None:
        self._queue.put((messages, latest, on_done))

    def stop(self, timeout: float = 5.0) -> None:
        """Publish what waits, then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batches = [self._queue.get()]
            while True:  # what waits besides goes in the same pipeline
                try:
                    batches.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if None in batches:
                stopping = True
                batches = [b for b in batches if b is not None]
            if not batches:
                continue
            messages: list = []
            latest: dict = {}
            for batch_messages, batch_latest, _ in batches:
                messages.extend(batch_messages.items() if isinstance(batch_messages, dict) else batch_messages)
                latest.update(batch_latest or {})
            try:
                result = self.publisher.publish(messages, latest)
            except Exception:  # not Redis's (those are results): the thread must live on, or the pump blocks
                log.exception("publishing a batch failed")
                result = PublishResult.REDIS_ERROR
            for _, _, on_done in batches:
                try:
                    on_done(result)
                except Exception:
                    log.exception("publish callback failed")
