"""Fixtures for batch tests: the real worker, paper broker (postbacks to the live server), PostgreSQL, Redis."""
from __future__ import annotations


import pytest
from kiteconnect import KiteConnect

from tests.conftest import BROKER_ACCOUNTS
from tests.support.polling import wait_for  # noqa: F401  (the batch tests import it from here)


@pytest.fixture(scope="session")
def batch_stack(live_server, paper_broker, instruments, celery_worker):
    return paper_broker


@pytest.fixture(autouse=True)
def clean_faults(request):
    if "batch_stack" not in request.fixturenames:
        yield
        return
    broker = request.getfixturevalue("batch_stack")
    broker.clear_faults()
    yield
    broker.clear_faults()


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


def leg(instrument, side: str, lots: int = 1, **extra) -> dict:
    body = {"exchange": instrument.exchange, "tradingsymbol": instrument.tradingsymbol, "transaction_type": side,
            "quantity": instrument.lot_size * lots, "product": "NRML", "order_type": "MARKET"}
    body.update(extra)
    return body


def iron_condor(chain) -> list[dict]:
    by_key, strikes = chain
    mid = len(strikes) // 2
    return [leg(by_key[(strikes[mid - 4], "PE")], "BUY"), leg(by_key[(strikes[mid - 2], "PE")], "SELL"),
            leg(by_key[(strikes[mid + 2], "CE")], "SELL"), leg(by_key[(strikes[mid + 4], "CE")], "BUY")]


def net_positions(kite, symbols) -> dict[str, int]:
    rows = kite.positions()["net"]
    return {s: sum(int(r["quantity"]) for r in rows if r["tradingsymbol"] == s) for s in symbols}
