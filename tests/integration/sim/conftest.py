"""Fixtures for the paper broker tests: one broker subprocess, one Twisted reactor.

Each test gets its own api key, so accounts (orders, positions) and Kite's
per-key rate limits never leak between tests; faults and market controls are broker-wide, and
`clean_faults` (tests/integration/conftest.py) resets them around every test that uses `broker`.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from kiteconnect import KiteConnect

from tests.support.processes import PaperBroker
from tests.support.paper_broker import TEST_SECRET, TickerRecorder
from tests.support.waiting import wait_for

_keys = itertools.count(1)


@pytest.fixture(scope="session")
def broker():
    # Tokens outlive 06:00 IST here (a run may span it); expiry is tested on brokers of its own.
    with PaperBroker(seed=11, tick_rate=5, api_secret=TEST_SECRET, daily_expiry=False) as b:
        yield b


@pytest.fixture
def api_key():
    return f"key{next(_keys)}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def kite(broker, api_key):
    return KiteConnect(api_key, access_token="token" + api_key, root=broker.root)


@pytest.fixture(scope="session")
def start_ticker():
    """Connect tickers on one reactor, started once for the whole session and never stopped."""
    from twisted.internet import reactor
    started: list[TickerRecorder] = []

    def start(recorder: TickerRecorder) -> TickerRecorder:
        if not reactor.running:
            recorder.ticker.connect(threaded=True)
            wait_for(lambda: reactor.running, 5, 0.02, what="the reactor running")
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
            wait_for(lambda: recorder.connects >= 1, 10, 0.02, what="the ticker to connect")
        return recorder

    yield make
    for recorder in made:
        recorder.close()


@pytest.fixture
def postback_receiver():
    """A tiny local HTTP server collecting postback bodies."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"content_type": self.headers["Content-Type"], "body": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/postback", received
    server.shutdown()
    server.server_close()
