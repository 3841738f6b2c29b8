"""A Kite session that dies under the running stream: the account's instruments move to the other
account within 15 s and the session is recorded expired; a login brings the account back with a
fair share; a token a login already replaced is swapped for the new one, not expired.

The paper broker ends one account's session the way the official client logs out
(`invalidate_access_token`): the token's ticker sockets are closed with 1008, and every
reconnect with it is refused with 403.
"""
from __future__ import annotations

import time
import uuid

import pytest

from tests.integration.stream.process.kite_sessions import (ENDING, KEEPING, carried, every_token_ticks, log_in,
                                                            log_out, session_state, stored_token)
from tests.support.processes import StreamProcess

FAILOVER_S = 15
PER_ACCOUNT_SLACK = 3  # "even" allows one instrument per connection, 3 connections per account


@pytest.fixture(scope="module")
def stream(live_sessions, broker_env, accounts, instruments, subscribed):
    process = StreamProcess().start()
    yield process
    process.stop()


@pytest.fixture
def streaming_both(stream, paper_broker, accounts, subscribed):
    """Both accounts live and carrying a share of the subscriptions."""
    stream.wait_until(lambda: carried(paper_broker, accounts), 60, "both accounts to stream",
                      until=lambda c: min(c.values()) > 0 and sum(c.values()) == len(subscribed))
    return stream


def test_a_dead_session_hands_its_instruments_to_the_other_account_within_15s(
        streaming_both, paper_broker, accounts, subscribed, test_env):
    stream = streaming_both
    log_out(paper_broker, accounts, ENDING)
    ended_at = time.monotonic()

    stream.wait_until(lambda: carried(paper_broker, accounts), FAILOVER_S, "the other account to carry everything",
                      until=lambda c: c == {KEEPING: len(subscribed), ENDING: 0})
    time.sleep(0.3)  # let batches of ticks from the closed sockets go by
    seen = every_token_ticks(test_env.redis_url, subscribed, FAILOVER_S - (time.monotonic() - ended_at))
    assert set(subscribed) <= seen, f"silent after the failover: {sorted(set(subscribed) - seen)}"
    assert time.monotonic() - ended_at < FAILOVER_S

    session = session_state(ENDING)
    assert session["state"] == "expired" and session["reason"].startswith("stream:"), session
    assert session_state(KEEPING)["state"] == "active"
    beat = stream.wait_until(stream.heartbeat, 10, "a heartbeat without the account",
                             until=lambda b: b and b["accounts"] == [KEEPING])
    assert beat["per_account"] == {KEEPING: len(subscribed)} and beat["unassigned"] == 0

    refused = paper_broker.state()["ticker"]["refused"]
    time.sleep(3)  # KiteTicker alone would retry within a second or two
    assert paper_broker.state()["ticker"]["refused"] == refused, "the stream reconnects with a dead token"
    assert stream.alive()


def test_a_login_brings_the_account_back_with_a_fair_share(stream, paper_broker, accounts, subscribed, test_env):
    if session_state(ENDING)["state"] != "expired":  # run on its own: end the session first
        log_out(paper_broker, accounts, ENDING)
        stream.wait_until(lambda: carried(paper_broker, accounts)[ENDING], FAILOVER_S, "the account to be dropped",
                          until=lambda n: n == 0)
    log_in(paper_broker, accounts, ENDING, f"tok-{ENDING}-{uuid.uuid4().hex[:8]}")
    logged_in_at = time.monotonic()

    loads = stream.wait_until(
        lambda: carried(paper_broker, accounts), FAILOVER_S, "a fair share for the account back",
        until=lambda c: sum(c.values()) == len(subscribed)
        and abs(c[KEEPING] - c[ENDING]) <= PER_ACCOUNT_SLACK)
    assert min(loads.values()) >= len(subscribed) // 2 - PER_ACCOUNT_SLACK
    time.sleep(0.3)
    seen = every_token_ticks(test_env.redis_url, subscribed, FAILOVER_S - (time.monotonic() - logged_in_at))
    assert set(subscribed) <= seen, f"silent after the rebalance: {sorted(set(subscribed) - seen)}"

    assert session_state(ENDING)["state"] == "active"
    beat = stream.wait_until(stream.heartbeat, 10, "a heartbeat with both accounts",
                             until=lambda b: b and sorted(b["accounts"]) == sorted([KEEPING, ENDING]))
    assert sum(beat["per_account"].values()) == len(subscribed)


def test_a_refused_token_a_login_already_replaced_is_swapped_not_expired(
        streaming_both, paper_broker, accounts, subscribed, test_env):
    stream = streaming_both
    in_use = stored_token(ENDING)  # what the stream connected with
    # A login while the old token still works: the stream has no reason to reconnect yet.
    log_in(paper_broker, accounts, ENDING, f"tok-{ENDING}-{uuid.uuid4().hex[:8]}")
    closed_before = paper_broker.state()["ticker"]["closed_for_session"]
    log_out(paper_broker, accounts, ENDING, token=in_use)  # now the broker refuses the old one
    ended_at = time.monotonic()
    assert paper_broker.state()["ticker"]["closed_for_session"] > closed_before  # its sockets were closed

    stream.wait_until(lambda: paper_broker.state()["ticker"]["connections"].get(accounts[ENDING]["api_key"], 0),
                      FAILOVER_S, "the account to reconnect with its new token", until=lambda n: n == 3)
    stream.wait_until(lambda: carried(paper_broker, accounts), FAILOVER_S, "both accounts to carry their share",
                      until=lambda c: min(c.values()) > 0 and sum(c.values()) == len(subscribed))
    time.sleep(0.3)
    seen = every_token_ticks(test_env.redis_url, subscribed, FAILOVER_S)
    assert set(subscribed) <= seen, f"silent after the token swap: {sorted(set(subscribed) - seen)}"
    assert time.monotonic() - ended_at < 2 * FAILOVER_S

    assert session_state(ENDING)["state"] == "active"  # the refused token was not the account's any more
    assert "reconnecting with the new one" in stream.log(20_000)


def test_a_session_marked_expired_elsewhere_is_dropped_at_once(streaming_both, paper_broker, accounts, subscribed,
                                                                test_env):
    """An order worker saw the TokenException: the stream's own sockets may still be open (Kite ends
    them in its own time), but `streaming_account_ids` no longer lists the account and the
    announcement on `stream:control` makes the lease keeper look at once."""
    from app.kite_session.state import mark_expired

    stream = streaming_both
    assert mark_expired(ENDING, "Incorrect `api_key` or `access_token`.", "orders", access_token=stored_token(ENDING))
    marked_at = time.monotonic()
    stream.wait_until(lambda: carried(paper_broker, accounts), FAILOVER_S, "the other account to carry everything",
                      until=lambda c: c == {KEEPING: len(subscribed), ENDING: 0})
    time.sleep(0.3)
    seen = every_token_ticks(test_env.redis_url, subscribed, FAILOVER_S - (time.monotonic() - marked_at))
    assert set(subscribed) <= seen, f"silent after the failover: {sorted(set(subscribed) - seen)}"
    assert session_state(ENDING)["reason"].startswith("orders:")  # the stream did not overwrite it
