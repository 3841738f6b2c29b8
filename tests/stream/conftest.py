"""Fixtures for the stream engine tests: another DB of the session's Redis,
and a private Redis server that a test may stop and restart."""
from __future__ import annotations

import os
import random

import pytest
import redis

from tests.support.redis_server import PrivateRedis


@pytest.fixture
def redis_url():
    """Another DB of the session's Redis server, flushed before and after."""
    # Not the session's own DB (tests/support/environment.py picks that one).
    server, session_db = os.environ["REDIS_URL"].rsplit("/", 1)
    db = random.choice([n for n in range(1, 16) if str(n) != session_db])
    url = f"{server}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
