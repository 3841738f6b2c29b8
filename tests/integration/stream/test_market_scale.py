"""The whole F&O market on the service side (#22): 27,000 subscriptions over three accounts.

A paper broker of the module's own with `--universe fno` (~96,000 instruments), its dump loaded into
the registry the way the refresh task loads it, three accounts with live sessions on it and no other
account streaming. One bulk request subscribes 27,000 futures and options in FULL mode; a real
`python -m workers.stream` (publishing into a Redis of its own: its tick rate would crowd the shared
server) spreads them within Kite's limits — at most 3 connections per api key, 3,000 instruments per
connection — and every one of them ticks. The chain of one underlying is subscribed in one call.

Afterwards the instruments, accounts and subscriptions are as they were: the other tests use the
paper broker's small universe.
"""
from __future__ import annotations

import json
import secrets

import pytest
from kiteconnect import KiteConnect
from sqlalchemy import func, select

from tests.support.processes import PaperBroker, StreamProcess
from tests.support.redis_server import PrivateRedis

ACCOUNTS = 3
PER_CONNECTION = 3000  # Kite's limits, the service's defaults (MAX_INSTRUMENTS_PER_WS, MAX_WS_CONNECTIONS)
CONNECTIONS = 3
CAPACITY = ACCOUNTS * CONNECTIONS * PER_CONNECTION  # 27,000
# Ticks per second per instrument on average: ~27,000 ticks/s for the set, and every instrument (the
# least liquid at ~0.3 of the average) at least every ~3.5 s.
TICK_RATE = 1.0


@pytest.fixture(scope="module")
def fno_keys():
    suffix = secrets.token_hex(3)
    return {f"fno-{k}-{suffix}": {"api_key": f"paper-fno-{k}-{suffix}", "api_secret": f"secret-fno-{k}",
                                  "access_token": f"tok-fno-{k}-{suffix}"} for k in range(ACCOUNTS)}


@pytest.fixture(scope="module")
def fno_broker(fno_keys):
    accounts = {c["api_key"]: (c["api_secret"], c["access_token"]) for c in fno_keys.values()}
    with PaperBroker(seed=11, universe="fno", tick_rate=TICK_RATE, accounts=accounts, daily_expiry=False,
                     startup_timeout=60) as broker:
        yield broker


@pytest.fixture(scope="module")
def fno_market(app, fno_broker, fno_keys):
    """The broker's fno dump in the registry and its three accounts the only active ones; what was
    there before is put back afterwards."""
    from app import accounts as account_service
    from app.core.db import session_scope
    from app.market.instrument_refresh import fetch_dump
    from app.market.instruments import registry, store_instruments
    from app.models import Account, Instrument, Subscription

    with session_scope() as session:
        saved = [dict(row) for row in session.execute(select(*Instrument.__table__.c)).mappings()]
        others = list(session.scalars(select(Account.id).where(Account.active.is_(True))))
        session.query(Account).filter(Account.id.in_(others)).update({"active": False})
        session.query(Subscription).delete()
    first = next(iter(fno_keys.values()))
    rows = fetch_dump(KiteConnect(first["api_key"], access_token=first["access_token"], root=fno_broker.root))
    with session_scope() as session:
        store_instruments(session, rows)
        for account_id, creds in fno_keys.items():
            account_service.add_account(session, account_id, **creds)
    registry().invalidate()
    yield registry()
    with session_scope() as session:
        session.query(Subscription).delete()
        session.query(Account).filter(Account.id.in_(list(fno_keys))).update({"active": False})
        session.query(Account).filter(Account.id.in_(others)).update({"active": True})
        store_instruments(session, saved)
    registry().invalidate()


@pytest.fixture
def no_subscriptions(fno_market):
    from app.core.db import session_scope
    from app.models import Subscription

    def clear():
        with session_scope() as session:
            session.query(Subscription).delete()
    clear()
    yield
    clear()


def stored_subscriptions() -> int:
    from app.core.db import session_scope
    from app.models import Subscription

    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Subscription))


def derivative_tokens(registry, count: int) -> list[int]:
    tokens = sorted(i.instrument_token for i in registry.all() if i.is_derivative)
    assert len(tokens) >= count, f"the fno universe lists only {len(tokens)} futures and options"
    return tokens[:count]


def test_the_fno_dump_loads_with_every_underlying(fno_market, fno_broker):
    assert len(fno_market.all()) == fno_broker.state()["universe"]["instruments"] > 80_000
    names = fno_market.option_underlyings()
    assert len(names) > 150 and {"NIFTY", "BANKNIFTY"} <= set(names)
    nifty = fno_market.underlying("NIFTY")
    assert nifty.index.tradingsymbol == "NIFTY 50" and nifty.futures and len(nifty.expiries) > 3
    stock = fno_market.underlying(next(n for n in names if fno_market.by_symbol("NSE", n)))
    assert stock.index.segment == "NSE" and stock.index.instrument_type == "EQ" and stock.options


def test_bulk_takes_the_whole_capacity_in_one_request_and_no_more(app, client, headers, fno_market, fno_keys,
                                                                  no_subscriptions):
    from app.web.api.subscriptions import BULK_MAX_TOKENS

    tokens = derivative_tokens(fno_market, CAPACITY + 1)
    # Spaced out as a client may send it: past the 256 KiB other bodies are held to (Kite's own tokens
    # run to 8 or 9 digits), still read whole.
    raw = '{"instrument_tokens": [' + ",   ".join(map(str, tokens)) + '], "requested_mode": "FULL"}'
    assert len(raw) > app.config["MAX_CONTENT_LENGTH"]
    over = client.post("/subscriptions/bulk", headers=headers["admin"], data=raw, content_type="application/json")
    assert over.status_code == 409, over.get_data(as_text=True)[:300]
    assert over.json["error"]["code"] == "over_capacity"
    assert over.json["error"]["details"] == {"requested": CAPACITY + 1, "capacity": CAPACITY}
    assert stored_subscriptions() == 0  # all or nothing

    past_schema = client.post("/subscriptions/bulk", headers=headers["admin"],
                              json={"instrument_tokens": list(range(1, BULK_MAX_TOKENS + 2))})
    assert past_schema.status_code == 422 and "instrument_tokens" in past_schema.json["error"]["details"]

    pinned = client.post("/subscriptions/bulk", headers=headers["admin"], json={
        "instrument_tokens": tokens[:CAPACITY // ACCOUNTS + 1], "account_id": next(iter(fno_keys))})
    assert pinned.status_code == 409 and pinned.json["error"]["details"]["capacity"] == CAPACITY // ACCOUNTS
    assert stored_subscriptions() == 0


def test_the_chain_of_an_underlying_in_one_call(client, headers, fno_market, fno_keys, no_subscriptions):
    nifty = fno_market.underlying("NIFTY")
    expiry = nifty.expiries[0]
    body = {"underlying": "nifty", "expiry": expiry.isoformat(), "strikes": 10, "requested_mode": "FULL"}
    response = client.post("/subscriptions/chain", headers=headers["admin"], json=body)
    assert response.status_code == 200, response.json
    result = response.json
    legs = nifty.options_expiring(expiry)
    atm = result["atm_strikes"][expiry.isoformat()]
    strikes = sorted({o.strike for o in legs})
    around = set(strikes[strikes.index(atm) - 10: strikes.index(atm) + 11])
    assert len(around) == 21 and result["strikes"] == 21 and result["options"] == 42
    expected = {o.instrument_token for o in legs if o.strike in around} | {nifty.index.instrument_token} \
        | {f.instrument_token for f in nifty.futures}
    assert set(result["instrument_tokens"]) == expected and result["subscribed"] == result["created"] == len(expected)
    # The ATM is the strike nearest the price the dump was loaded with (nothing streams here yet).
    assert abs(atm - result["reference_price"]) <= min(abs(k - result["reference_price"]) for k in strikes)
    listed = client.get("/subscriptions", headers=headers["admin"]).json
    assert {s["instrument_token"] for s in listed} == expected and {s["requested_mode"] for s in listed} == {"FULL"}

    # Every expiry, every strike, without the spot and futures; the 42 already there are left as they are.
    whole = client.post("/subscriptions/chain", headers=headers["admin"],
                        json={"underlying": "NIFTY", "include_underlying": False, "requested_mode": "FULL"}).json
    assert whole["expiries"] == [e.isoformat() for e in nifty.expiries]
    assert whole["subscribed"] == whole["options"] == len(nifty.options)
    assert whole["created"] == len(nifty.options) - 42 and whole["updated"] == 0

    unknown = client.post("/subscriptions/chain", headers=headers["admin"], json={"underlying": "NOSUCHNAME"})
    assert unknown.status_code == 404 and "NOSUCHNAME" in unknown.json["error"]["message"]
    no_expiry = client.post("/subscriptions/chain", headers=headers["admin"],
                            json={"underlying": "NIFTY", "expiry": "2031-01-01"})
    assert no_expiry.status_code == 404 and "2031-01-01" in no_expiry.json["error"]["message"]
    # The rules of /subscriptions/bulk: a key pins only to its own accounts.
    refused = client.post("/subscriptions/chain", headers=headers["primary"], json={
        "underlying": "BANKNIFTY", "strikes": 2, "account_id": next(iter(fno_keys))})
    assert refused.status_code == 403
    assert stored_subscriptions() == len(nifty.options) + 1 + len(nifty.futures)


@pytest.fixture
def stream_redis():
    server = PrivateRedis().start()
    yield server
    server.stop()


def test_27000_instruments_are_spread_within_kites_limits_and_every_token_ticks(
        client, headers, fno_market, fno_broker, fno_keys, no_subscriptions, stream_redis):
    import redis

    tokens = derivative_tokens(fno_market, CAPACITY)
    response = client.post("/subscriptions/bulk", headers=headers["admin"],
                           json={"instrument_tokens": tokens, "requested_mode": "FULL"})
    assert response.status_code == 200 and response.json["created"] == CAPACITY, response.json

    stream = StreamProcess(env={"REDIS_URL": stream_redis.url, "KITE_API_ROOT": fno_broker.root,
                                "KITE_WS_ROOT": fno_broker.ws_root}).start()
    latest = redis.Redis.from_url(stream_redis.url)
    try:
        keys = {c["api_key"] for c in fno_keys.values()}

        def at_the_broker() -> dict[str, list[int]]:
            subscriptions = fno_broker.state()["ticker"]["subscriptions"]
            return {k: v for k, v in subscriptions.items() if k in keys}
        spread = stream.wait_until(at_the_broker, 120, "27,000 instruments subscribed at the broker",
                                   until=lambda s: sum(map(sum, s.values())) == CAPACITY)
        assert set(spread) == keys, spread
        for key, connections in spread.items():
            assert len(connections) <= CONNECTIONS and max(connections) <= PER_CONNECTION, spread

        def published() -> set[int]:
            return {int(t) for t in latest.hkeys("ticks:latest")}
        stream.wait_until(lambda: len(published() & set(tokens)), 60, "a published tick of every token",
                          until=lambda n: n == CAPACITY)
        # Not only the snapshot each subscription starts with: from an empty hash, each ticks again.
        latest.delete("ticks:latest")
        stream.wait_until(lambda: len(published() & set(tokens)), 30, "every token ticking again",
                          until=lambda n: n == CAPACITY)
        values = latest.hmget("ticks:latest", [str(t) for t in tokens])
        modes = {json.loads(v)["mode"] for v in values}
        assert modes == {"full"}, modes
    finally:
        latest.close()
        stream.stop()
