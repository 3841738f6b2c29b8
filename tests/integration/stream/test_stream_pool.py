"""TickerPool against the paper broker through the official KiteTicker:
ticks arrive, live subscription changes, reconnect after drops, silence and
KiteTicker giving up, order updates, 9,000 instruments over 3 connections."""
import itertools
import queue
import time

import pytest
from kiteconnect import KiteConnect

from sim.harness import PaperBroker
from workers.stream import frames, metrics
from workers.stream.pool import TickerPool
from workers.stream.connection_plan import CapacityExceeded
from tests.support.waiting import wait_for

_keys = itertools.count(1)


@pytest.fixture(scope="module")
def broker():
    with PaperBroker(seed=11, tick_rate=2, daily_expiry=False) as b:   # a run may span 06:00 IST
        yield b


@pytest.fixture(scope="module")
def instruments(broker):
    return KiteConnect("lister", access_token="lister", root=broker.root).instruments()


@pytest.fixture
def pool(broker):
    pools = []

    def make(**kw):
        p = TickerPool(broker.ws_root, **kw).start()
        pools.append(p)
        return p

    yield make
    for p in pools:
        p.stop()
    broker.clear_faults()


def new_account(pool_obj, name="acct"):
    n = next(_keys)
    pool_obj.add_account(f"{name}{n}", f"key{n}", f"token{n}")
    return f"{name}{n}", f"key{n}"


def collect(pool_obj, seconds, until=None):
    """token -> set of packet lengths seen, over `seconds` (or until `until(seen)`)."""
    seen: dict[int, set[int]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            _, payload, _ = pool_obj.frames.get(timeout=0.2)
        except queue.Empty:
            continue
        rows = frames.decode_frame(payload)
        for tok, length in zip(rows["instrument_token"].tolist(), rows["packet_length"].tolist()):
            seen.setdefault(tok, set()).add(length)
        if until is not None and until(seen):
            break
    return seen


def drain(pool_obj):
    while True:
        try:
            pool_obj.frames.get_nowait()
        except queue.Empty:
            return


def test_ticks_arrive_in_the_requested_modes_and_changes_apply_live(pool, instruments):
    p = pool()
    new_account(p)
    tokens = [i["instrument_token"] for i in instruments][:60]
    p.set_subscriptions({t: "full" for t in tokens})
    seen = collect(p, 10, until=lambda s: set(tokens) <= set(s))
    assert set(seen) == set(tokens)
    index = {i["instrument_token"] for i in instruments if i["segment"] == "INDICES"}
    for tok in tokens:
        assert seen[tok] == ({32} if tok in index else {184})
    # Live changes: drop half, switch a few to ltp.
    keep, drop = tokens[:30], tokens[30:]
    p.unsubscribe(drop)
    p.set_mode(keep[:10], "ltp")
    time.sleep(1.0)
    drain(p)
    seen = collect(p, 6, until=lambda s: set(keep) <= set(s))
    assert set(seen) == set(keep)
    for tok in keep[:10]:
        assert seen[tok] == {8}


def test_drop_ws_resumes_with_all_subscriptions_within_15s(pool, broker, instruments):
    p = pool()
    _, key = new_account(p)
    tokens = [i["instrument_token"] for i in instruments]
    p.set_subscriptions({t: "quote" for t in tokens})
    assert set(collect(p, 10, until=lambda s: set(tokens) <= set(s))) == set(tokens)
    connects_before = sum(c["connects"] for c in p.status()["connections"])
    broker.set_faults(drop_ws=True)
    dropped_at = time.monotonic()
    assert wait_for(lambda: sum(c["connects"] for c in p.status()["connections"]) >= connects_before + 3, 15)
    drain(p)
    seen = collect(p, 15 - (time.monotonic() - dropped_at), until=lambda s: set(tokens) <= set(s))
    assert set(seen) == set(tokens), f"{len(set(tokens) - set(seen))} instruments missing after the drop"
    assert time.monotonic() - dropped_at < 15
    subs = broker.state()["ticker"]["subscriptions"][key]
    assert sum(subs) == len(tokens) and len(subs) == 3  # resubscribed exactly, no duplicates


def test_silent_connection_is_detected_and_replaced(pool, broker, instruments):
    p = pool(silence_timeout_s=2.0, watchdog_interval_s=0.5)
    account, _ = new_account(p)
    tokens = [i["instrument_token"] for i in instruments][:30]
    p.subscribe(tokens, "ltp")
    assert collect(p, 10, until=lambda s: set(tokens) <= set(s))
    before = metrics.POOL_RECONNECTS.labels(account_id=account, reason="silence")._value.get()
    broker.set_faults(silence_ws=True)  # socket stays open, nothing comes: KiteTicker alone never notices
    assert wait_for(lambda: metrics.POOL_RECONNECTS.labels(account_id=account, reason="silence")._value.get() > before, 10)
    broker.set_faults(silence_ws=False)
    drain(p)
    assert set(collect(p, 12, until=lambda s: set(tokens) <= set(s))) == set(tokens)


def test_pool_restarts_a_ticker_after_kiteticker_gives_up(pool, broker, instruments):
    p = pool(reconnect_max_tries=1, restart_backoff_s=0.5, watchdog_interval_s=0.5)
    account, _ = new_account(p)
    tokens = [i["instrument_token"] for i in instruments][:5]
    p.subscribe(tokens, "ltp")
    assert collect(p, 10, until=lambda s: set(tokens) <= set(s))
    broker.set_faults(refuse_ws_next=4, drop_ws=True)  # the retries are refused: KiteTicker gives up
    assert wait_for(lambda: metrics.POOL_RECONNECTS.labels(account_id=account, reason="gave_up")._value.get() > 0, 20)
    drain(p)
    assert set(collect(p, 25, until=lambda s: set(tokens) <= set(s))) == set(tokens)
    assert all(c["connected"] for c in p.status()["connections"])


def test_order_updates_reach_the_callback_with_the_account(pool, broker, instruments):
    updates = queue.Queue()
    p = pool(on_order_update=lambda account_id, order: updates.put((account_id, order)))
    account, key = new_account(p)
    option = next(i for i in instruments if i["instrument_type"] == "CE")
    p.subscribe([option["instrument_token"]], "ltp")
    assert wait_for(lambda: all(c["connected"] for c in p.status()["connections"]) and p.status()["connections"], 10)
    time.sleep(0.5)
    kite = KiteConnect(key, access_token="token-for-orders", root=broker.root)
    order_id = kite.place_order(variety="regular", exchange=option["exchange"], tradingsymbol=option["tradingsymbol"],
                                transaction_type="BUY", quantity=option["lot_size"], product="NRML",
                                order_type="MARKET", market_protection=-1)
    got_account, order = updates.get(timeout=10)
    assert got_account == account and order["order_id"] == order_id


def test_capacity_and_9000_instruments_over_3_connections(pool, broker, instruments):
    p = pool()
    _, key = new_account(p)
    real = [i["instrument_token"] for i in instruments]
    synthetic = [t for t in range(10_000_000, 10_100_000) if t not in set(real)][: 9000 - len(real)]
    p.set_subscriptions({t: "ltp" for t in real + synthetic})
    cap = p.capacity()
    assert (cap.total, cap.used, cap.free) == (9000, 9000, 0)
    with pytest.raises(CapacityExceeded):
        p.subscribe([20_000_000])
    assert wait_for(lambda: [(c["connected"], c["subscribed"]) for c in p.status()["connections"]]
                    == [(True, 3000)] * 3, 15)
    assert set(collect(p, 15, until=lambda s: set(real) <= set(s))) == set(real)
    assert broker.state()["ticker"]["connections"][key] == 3


def test_a_logged_out_token_is_reported_once_and_never_retried(pool, broker, instruments):
    """Logout closes the token's sockets (1008): the pool reports the dead session once, stops
    reconnecting with that token, and streams again once it is given a new one."""
    dead = queue.Queue()
    p = pool(on_session_dead=lambda *args: dead.put(args), watchdog_interval_s=0.5)
    account, key = new_account(p)
    token = f"token{key[3:]}"
    tokens = [i["instrument_token"] for i in instruments][:30]
    p.subscribe(tokens, "ltp")
    assert collect(p, 10, until=lambda s: set(tokens) <= set(s))
    assert wait_for(lambda: [c["connected"] for c in p.status()["connections"]] == [True] * 3, 10)

    KiteConnect(key, access_token=token, root=broker.root).invalidate_access_token()
    got_account, got_token, reason = dead.get(timeout=10)
    assert (got_account, got_token) == (account, token) and "Session expired" in reason
    assert wait_for(lambda: all(c["refused"] and not c["connected"] for c in p.status()["connections"]), 5)
    refused = broker.state()["ticker"]["refused"]
    time.sleep(3)  # KiteTicker would have retried within a second or two
    assert broker.state()["ticker"]["refused"] == refused, "reconnected with a dead token"
    assert dead.empty()  # three sockets, one report

    p.add_account(account, key, f"{token}-relogged")  # a login: new credentials, same account
    drain(p)
    assert set(collect(p, 15, until=lambda s: set(tokens) <= set(s))) == set(tokens)
    assert [(c["connected"], c["refused"]) for c in p.status()["connections"]] == [(True, False)] * 3


def test_a_handshake_refused_with_403_is_a_dead_session_too(pool, broker, instruments):
    dead = queue.Queue()
    p = pool(on_session_dead=lambda *args: dead.put(args))
    kite = KiteConnect("key-ended", access_token="token-ended", root=broker.root)
    kite.invalidate_access_token()  # a token that ended before the stream ever used it
    p.add_account("ended", "key-ended", "token-ended")
    p.subscribe([i["instrument_token"] for i in instruments][:3], "ltp")
    account, token, reason = dead.get(timeout=10)
    assert (account, token) == ("ended", "token-ended") and "403" in reason
    time.sleep(1)
    assert dead.empty()


def test_a_new_account_takes_a_fair_share_from_the_busy_one(pool, broker, instruments):
    p = pool()
    _, key_a = new_account(p)
    tokens = [i["instrument_token"] for i in instruments][:60]
    p.set_subscriptions({t: "ltp" for t in tokens})
    assert wait_for(lambda: sum(broker.state()["ticker"]["subscriptions"].get(key_a, [])) == 60, 10)
    _, key_b = new_account(p)

    def carried():
        subs = broker.state()["ticker"]["subscriptions"]
        return sum(subs.get(key_a, [])), sum(subs.get(key_b, []))

    assert wait_for(carried, 10, until=lambda loads: loads == (30, 30))
    drain(p)
    assert set(collect(p, 10, until=lambda s: set(tokens) <= set(s))) == set(tokens)
