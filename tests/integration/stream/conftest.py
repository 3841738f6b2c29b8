"""Fixtures for the stream engine's tests: a Redis server of each test's own.

Pub/sub channels are server-wide (not per DB), so a stream process elsewhere on a
shared server would publish into these tests' `ticker:*` subscriptions.
"""
from __future__ import annotations

import pytest


@pytest.fixture
def redis_url(private_redis):
    """The URL of the test's private Redis (`private_redis`, tests/integration/conftest.py)."""
    return private_redis.url
