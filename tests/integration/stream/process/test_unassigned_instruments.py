"""What no account can carry: with room for 10 instruments per connection (30 per account), the
42 subscriptions fit on two accounts, not on one. When one account's session dies the stream says
how many get no ticks (an ERROR line, `stream_instruments_unassigned`, its heartbeat); a login
gives them an account again."""
from __future__ import annotations

import time
import uuid

import pytest
import requests

from tests.integration.stream.process.kite_sessions import (ENDING, KEEPING, carried, every_token_ticks, log_in,
                                                            log_out)
from tests.support.ports import free_port
from tests.support.processes import StreamProcess

PER_CONNECTION = 10
ONE_ACCOUNT = 3 * PER_CONNECTION


@pytest.fixture(scope="module")
def metrics_port():
    return free_port()


@pytest.fixture(scope="module")
def stream(live_sessions, broker_env, accounts, instruments, subscribed, metrics_port):
    process = StreamProcess(env={"MAX_INSTRUMENTS_PER_WS": str(PER_CONNECTION),
                                 "STREAM_METRICS_PORT": str(metrics_port),
                                 "STREAM_METRICS_HOST": "127.0.0.1"}).start()
    yield process
    process.stop()


def unassigned_metric(port: int) -> float | None:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return None
    return next((float(line.split()[1]) for line in text.splitlines()
                 if line.startswith("stream_instruments_unassigned ")), None)


def test_instruments_no_account_can_carry_are_reported_until_a_login(stream, paper_broker, accounts, subscribed,
                                                                      metrics_port, test_env):
    assert len(subscribed) > ONE_ACCOUNT
    stream.wait_until(lambda: carried(paper_broker, accounts), 60, "both accounts to stream",
                      until=lambda c: min(c.values()) > 0 and sum(c.values()) == len(subscribed))
    stream.wait_until(lambda: unassigned_metric(metrics_port), 10, "the metric at 0", until=lambda v: v == 0)
    log_start = len(stream.log_path.read_text(errors="replace"))

    log_out(paper_broker, accounts, ENDING)
    left_over = len(subscribed) - ONE_ACCOUNT
    stream.wait_until(lambda: carried(paper_broker, accounts), 15, "one account full, the other gone",
                      until=lambda c: c == {KEEPING: ONE_ACCOUNT, ENDING: 0})
    beat = stream.wait_until(stream.heartbeat, 10, "a heartbeat counting the left-over",
                             until=lambda b: b and b["accounts"] == [KEEPING] and b["unassigned"] == left_over)
    assert beat["per_account"] == {KEEPING: ONE_ACCOUNT}
    assert unassigned_metric(metrics_port) == left_over
    said = [line for line in stream.log_path.read_text(errors="replace")[log_start:].splitlines()
            if f"{left_over} subscribed instruments get no ticks" in line]
    assert said and '"level": "ERROR"' in said[0], said

    log_in(paper_broker, accounts, ENDING, f"tok-{ENDING}-{uuid.uuid4().hex[:8]}")
    logged_in_at = time.monotonic()
    stream.wait_until(lambda: carried(paper_broker, accounts), 15, "everything carried again",
                      until=lambda c: sum(c.values()) == len(subscribed) and abs(c[KEEPING] - c[ENDING]) <= 3)
    stream.wait_until(lambda: unassigned_metric(metrics_port), 10, "the metric back at 0", until=lambda v: v == 0)
    seen = every_token_ticks(test_env.redis_url, subscribed, 15 - (time.monotonic() - logged_in_at))
    assert set(subscribed) <= seen, f"silent after the login: {sorted(set(subscribed) - seen)}"
