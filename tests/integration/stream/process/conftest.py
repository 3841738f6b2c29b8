"""The `stream` process under test: `python -m workers.stream` as a subprocess, against the
paper broker, the session's Redis and the test database."""
from __future__ import annotations

import pytest

from tests.support.processes import StreamProcess


@pytest.fixture(scope="module", autouse=True)
def only_paper_accounts(accounts):
    """Only `primary` and `other` stream here: other tests (the API fuzzer) may have registered
    accounts of their own, and the stream leases every active account with a token."""
    from app.core.db import session_scope
    from app.models import Account

    with session_scope() as session:
        others = [a.id for a in session.query(Account).filter(Account.active.is_(True),
                                                              Account.id.not_in(list(accounts)))]
        session.query(Account).filter(Account.id.in_(others)).update({"active": False})
    yield
    with session_scope() as session:
        session.query(Account).filter(Account.id.in_(others)).update({"active": True})


@pytest.fixture(scope="module")
def nifty_book(instruments):
    """The NIFTY index, its near future and the nearest expiry's 20 strikes around the middle."""
    from app.market.instruments import underlying_instruments

    found = underlying_instruments(instruments.all(), "NIFTY")
    expiry = min(o.expiry for o in found.options)
    options = sorted((o for o in found.options if o.expiry == expiry), key=lambda o: (o.strike, o.instrument_type))
    middle = len(options) // 2
    return found.index, found.futures[0], options[middle - 20: middle + 20]


@pytest.fixture(scope="module")
def subscribed(app, headers, nifty_book):
    from app.core.db import session_scope

    client = app.test_client()
    from app.models import Subscription

    with session_scope() as session:
        session.query(Subscription).delete()
    index, future, options = nifty_book
    tokens = [index.instrument_token, future.instrument_token] + [o.instrument_token for o in options]
    response = client.post("/subscriptions/bulk", headers=headers["admin"],
                           json={"instrument_tokens": tokens, "requested_mode": "FULL"})
    assert response.status_code == 200, response.json
    yield tokens
    with session_scope() as session:
        session.query(Subscription).delete()


@pytest.fixture(scope="module")
def stream(broker_env, accounts, instruments, subscribed):
    process = StreamProcess().start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def live_sessions(paper_broker, accounts):
    """Both paper accounts start with their own live token (an earlier test may have ended one);
    the one a test logs out (`kite_sessions.ENDING`) gets its own back afterwards: later tests use it."""
    from tests.integration.stream.process.kite_sessions import ENDING, KEEPING, log_in

    for account_id in (KEEPING, ENDING):
        log_in(paper_broker, accounts, account_id, accounts[account_id]["access_token"])
    yield
    log_in(paper_broker, accounts, ENDING, accounts[ENDING]["access_token"])
