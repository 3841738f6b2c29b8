"""Integration tests: the real parts (PostgreSQL, Redis, Celery workers, the paper broker).

The environment they need is set up before this folder's modules are imported, and the stack
fixtures (`app`, `client`, `paper_broker`, `celery_worker`, …) are in tests/conftest.py, shared
with the end-to-end tests. Here: what only integration tests use.
"""
from __future__ import annotations

import pytest

from tests.support import faults
from tests.support.environment import BROKER_ACCOUNTS
from tests.support.redis_server import PrivateRedis


@pytest.fixture(autouse=True)
def clean_faults(request):
    """Each test on a paper broker (`order_stack`, `batch_stack`, or a `broker` of its own, as the
    sim tests') leaves no faults behind; on the service's stack it starts with none too, and for
    orders with closed circuit breakers; where tests move the market, it moves again afterwards
    (tests/support/faults.py)."""
    name = faults.broker_fixture_of(request.fixturenames)
    if name is None:
        yield
        return
    broker, cleanup = request.getfixturevalue(name), faults.BROKER_FIXTURES[name]
    faults.before_test(broker, cleanup, service_accounts=BROKER_ACCOUNTS)
    yield
    faults.after_test(broker, cleanup)


@pytest.fixture
def private_redis():
    """A Redis server of the test's own, that the test may stop and restart on the same port."""
    server = PrivateRedis().start()
    yield server
    server.stop()
