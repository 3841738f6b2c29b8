"""Redis clients: one shared command pool per process and URL, and dedicated pub/sub connections."""
from __future__ import annotations

import os
from functools import lru_cache

import redis
from redis.client import PubSub

from app.core.config import get_settings

# Short timeouts: a Redis outage must surface as an error quickly, not hang a request.
_CONNECTION_OPTIONS = dict(socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)


@lru_cache(maxsize=8)
def _client(url: str, pid: int, max_connections: int, wait_s: float) -> redis.Redis:
    # A blocking pool: when every connection is busy (a thousand greenlets at once under
    # gevent), a caller waits for one to come back rather than failing with "Too many connections".
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=wait_s,
                                                 **_CONNECTION_OPTIONS)
    return redis.Redis(connection_pool=pool)


def get_redis(url: str | None = None) -> redis.Redis:
    settings = get_settings()
    return _client(url or settings.redis_url, os.getpid(), settings.redis_max_connections, settings.redis_pool_wait_s)


def dedicated_pubsub(url: str | None = None) -> PubSub:
    """A pub/sub connection of its own, outside the shared pool: a subscriber holds its
    connection for as long as it listens, and many listeners must not drain the pool.
    Closing the PubSub closes the connection."""
    client = redis.Redis.from_url(url or get_settings().redis_url, **_CONNECTION_OPTIONS)
    return client.pubsub(ignore_subscribe_messages=True)
