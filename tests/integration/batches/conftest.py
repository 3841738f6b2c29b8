"""Fixtures for batch tests: the real worker, paper broker (postbacks to the live server), PostgreSQL, Redis."""
from __future__ import annotations

import pytest
from kiteconnect import KiteConnect

from tests.support.environment import BROKER_ACCOUNTS


@pytest.fixture(scope="session")
def batch_stack(live_server, paper_broker, instruments, celery_worker):
    return paper_broker


@pytest.fixture(scope="session")
def kite(batch_stack):
    creds = BROKER_ACCOUNTS["primary"]
    return KiteConnect(creds["api_key"], access_token=creds["access_token"], root=batch_stack.root)


@pytest.fixture(scope="session")
def chain(instruments):
    """The nearest NIFTY expiry's options by (strike, CE|PE), and the strikes in order."""
    options = [i for i in instruments.all() if i.name == "NIFTY" and i.is_option]
    expiry = min(o.expiry for o in options)
    by_key = {(o.strike, o.instrument_type): o for o in options if o.expiry == expiry}
    strikes = sorted({k[0] for k in by_key})
    return by_key, strikes
