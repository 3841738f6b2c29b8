"""Talking to the paper broker in its own tests: through kiteconnect (an option to trade, an order
placed) and a KiteTicker that records what its callbacks see."""
from __future__ import annotations

import threading

from kiteconnect import KiteTicker
from requests.adapters import HTTPAdapter

# The api secret of the paper broker the sim tests start (checksums of session exchanges).
TEST_SECRET = "test-secret"


def option(kite, name="NIFTY", kind="CE", min_price=30.0):
    return next(i for i in kite.instruments("NFO")
                if i["name"] == name and i["instrument_type"] == kind and i["last_price"] >= min_price
                and i["last_price"] < 400)


def place(kite, inst, **kw):
    params = dict(variety="regular", exchange="NFO", tradingsymbol=inst["tradingsymbol"], transaction_type="BUY",
                  quantity=inst["lot_size"], product="NRML", order_type="MARKET", market_protection=-1)
    params.update(kw)
    return kite.place_order(**params)


class SourceAddressAdapter(HTTPAdapter):
    """Connects from a given local address: on one machine, 127.0.0.2 is another source IP for a broker
    listening on 127.0.0.1 (the static-IP tests)."""

    def __init__(self, source_ip: str, **kw):
        self.source_ip = source_ip
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        kw["source_address"] = (self.source_ip, 0)
        return super().init_poolmanager(*args, **kw)


def from_source_ip(kite, source_ip: str):
    """The KiteConnect client, now sending every request from `source_ip`."""
    kite.reqsession.mount("http://", SourceAddressAdapter(source_ip))
    return kite


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
