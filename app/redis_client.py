"""One Redis client per process and URL (redis-py pools its connections)."""
from __future__ import annotations

import os
from functools import lru_cache

import redis

from app.config import load_settings


@lru_cache(maxsize=8)
def _client(url: str, pid: int) -> redis.Redis:
    # Short timeouts: a Redis outage must surface as an error quickly, not hang a request.
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5,
                                health_check_interval=30, decode_responses=False)


def get_redis(url: str | None = None) -> redis.Redis:
    return _client(url or load_settings().redis_url, os.getpid())
