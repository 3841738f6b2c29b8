"""The `stream` process under test: `python -m workers.stream` as a subprocess."""
from __future__ import annotations

import json
import time

import pytest
import redis

from tests.support.processes import StreamProcess  # noqa: F401  (tests import it from here)

class ChannelListener:
    """Collects messages of Redis channels (pattern) with their arrival time."""

    def __init__(self, redis_url: str, pattern: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(pattern)

    def collect(self, seconds: float) -> list[tuple[float, str, dict]]:
        got, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.05)
            if message and message["type"] == "pmessage":
                got.append((time.monotonic(), message["channel"].decode(), json.loads(message["data"])))
        return got

    def first(self, predicate, timeout: float) -> tuple[float, str, dict] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.05)
            if message and message["type"] == "pmessage":
                item = (time.monotonic(), message["channel"].decode(), json.loads(message["data"]))
                if predicate(item):
                    return item
        return None

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


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
