"""Fixtures for the paper broker tests: one broker subprocess, one Twisted reactor.

Each test gets its own api key, so accounts (orders, positions) and Kite's
per-key rate limits never leak between tests.
"""
from __future__ import annotations

import itertools
import threading
import time
import uuid

import pytest
from kiteconnect import KiteConnect, KiteTicker

from sim.harness import PaperBroker

TEST_SECRET = "test-secret"
_keys = itertools.count(1)


@pytest.fixture(scope="session")
def broker():
    with PaperBroker(seed=11, tick_rate=5, api_secret=TEST_SECRET) as b:
        yield b


@pytest.fixture
def api_key():
    return f"key{next(_keys)}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def kite(broker, api_key):
    return KiteConnect(api_key, access_token="token" + api_key, root=broker.root)


@pytest.fixture(autouse=True)
def clean_faults(request):
    """Faults and market controls are broker-wide: reset them after every test that used the broker."""
    yield
    if "broker" in request.fixturenames:
        b = request.getfixturevalue("broker")
        b.clear_faults()
        b.set_market(frozen=False)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class TickerRecorder:
    """A KiteTicker on the shared reactor, recording everything its callbacks see."""

    def __init__(self, api_key: str, access_token: str, ws_root: str, raw: bool = False):
        self.ticker = KiteTicker(api_key, access_token, root=ws_root, reconnect_max_delay=5)
        self.ticks: list[dict] = []
        self.frames: list[bytes] = []
        self.orders: list[dict] = []
        self.errors: list[tuple] = []
        self.connects = 0
        self.closes: list[tuple] = []
        self.lock = threading.Lock()
        t = self.ticker
        t.on_connect = self._on_connect
        t.on_close = lambda ws, code, reason: self.closes.append((code, reason))
        t.on_error = lambda ws, code, reason: self.errors.append((code, reason))
        t.on_order_update = lambda ws, data: self.orders.append(data)
        if raw:
            t.on_message = self._on_message
        else:
            t.on_ticks = self._on_ticks
        self.on_connect_subscribe: tuple[str, list[int]] | None = None

    def _on_connect(self, ws, response):
        self.connects += 1
        if self.on_connect_subscribe:
            mode, tokens = self.on_connect_subscribe
            ws.subscribe(tokens)
            ws.set_mode(mode, tokens)

    def _on_ticks(self, ws, ticks):
        with self.lock:
            self.ticks.extend(ticks)

    def _on_message(self, ws, payload, is_binary):
        if is_binary:
            self.frames.append(payload)

    def latest(self, token: int, mode: str) -> dict | None:
        with self.lock:
            for tick in reversed(self.ticks):
                if tick["instrument_token"] == token and tick["mode"] == mode:
                    return tick
        return None

    # All ticker calls go through the reactor thread (calls from other threads are unreliable).
    def subscribe(self, tokens: list[int], mode: str = "quote") -> None:
        from twisted.internet import reactor

        def go():
            self.ticker.subscribe(tokens)
            self.ticker.set_mode(mode, tokens)
        reactor.callFromThread(go)

    def call(self, fn, *args) -> None:
        from twisted.internet import reactor
        reactor.callFromThread(fn, *args)

    def close(self) -> None:
        from twisted.internet import reactor
        reactor.callFromThread(self.ticker.close)


@pytest.fixture(scope="session")
def start_ticker():
    """Connect tickers on one reactor, started once for the whole session and never stopped."""
    from twisted.internet import reactor
    started: list[TickerRecorder] = []

    def start(recorder: TickerRecorder) -> TickerRecorder:
        if not reactor.running:
            recorder.ticker.connect(threaded=True)
            assert wait_for(lambda: reactor.running, 5)
        else:
            reactor.callFromThread(recorder.ticker.connect, threaded=True)
        started.append(recorder)
        return recorder

    yield start
    for recorder in started:
        recorder.close()
    time.sleep(0.2)


@pytest.fixture
def ticker_for(broker, start_ticker):
    """ticker_for(api_key) -> a connected TickerRecorder; closed at the end of the test."""
    made: list[TickerRecorder] = []

    def make(api_key: str, raw: bool = False, wait: bool = True) -> TickerRecorder:
        recorder = start_ticker(TickerRecorder(api_key, "token" + api_key, broker.ws_root, raw=raw))
        made.append(recorder)
        if wait:
            assert wait_for(lambda: recorder.connects >= 1, 10), "ticker did not connect"
        return recorder

    yield make
    for recorder in made:
        recorder.close()
