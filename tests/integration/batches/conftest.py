"""Fixtures for batch tests: the real worker, paper broker (postbacks to the live server), PostgreSQL, Redis."""
from __future__ import annotations

import pytest
import requests
from kiteconnect import KiteConnect

from tests.support.batches import within_rate_limit
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


@pytest.fixture()
def available_margin(batch_stack, kite):
    """`available_margin(rupees)` sets the primary account's available margin (Kite's `net`: cash
    less what its positions block) for this test and answers it; the account's cash is restored
    afterwards (the session's stack gives every account ₹100 crore)."""
    api_key = BROKER_ACCOUNTS["primary"]["api_key"]
    opening_cash = within_rate_limit(lambda: kite.margins("equity"))["available"]["cash"]

    def set_available(rupees: float) -> float:
        equity = within_rate_limit(lambda: kite.margins("equity"))
        cash = rupees + equity["available"]["cash"] - equity["net"]
        requests.post(f"{batch_stack.root}/_sim/accounts", json={"api_key": api_key, "cash": cash},
                      timeout=10).raise_for_status()
        return within_rate_limit(lambda: kite.margins("equity"))["net"]

    try:
        yield set_available
    finally:
        requests.post(f"{batch_stack.root}/_sim/accounts", json={"api_key": api_key, "cash": opening_cash},
                      timeout=10).raise_for_status()
