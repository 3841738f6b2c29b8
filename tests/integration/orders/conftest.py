"""Fixtures for order execution tests: the real worker, paper broker, PostgreSQL and Redis."""
from __future__ import annotations

import pytest

from tests.support.orders import Orders


@pytest.fixture(scope="session")
def order_stack(live_server, paper_broker, instruments, celery_worker):
    """Everything an order needs: accounts, instruments, a worker, postbacks to the live server."""
    return paper_broker


@pytest.fixture(scope="session")
def option(instruments):
    """A NIFTY option (lot size > 1): market orders fill at once."""
    rows = [i for i in instruments.all() if i.segment == "NFO-OPT" and i.instrument_type == "CE"]
    return sorted(rows, key=lambda i: i.strike)[len(rows) // 2]


@pytest.fixture(scope="session")
def future(instruments):
    return next(i for i in instruments.all() if i.segment == "NFO-FUT")


@pytest.fixture()
def orders(client, headers, order_stack):
    return Orders(client, headers, order_stack)
