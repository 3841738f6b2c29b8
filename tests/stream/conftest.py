"""Fixtures for the stream engine tests: a Redis server of each test's own.

Pub/sub channels are server-wide (not per DB), so a stream process elsewhere on a
shared server would publish into these tests' `ticker:*` subscriptions.
"""
from __future__ import annotations

import pytest

from tests.support.redis_server import PrivateRedis


@pytest.fixture
def private_redis():
    """A private server that the test may stop and restart on the same port."""
    server = PrivateRedis().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(private_redis):
    return private_redis.url
