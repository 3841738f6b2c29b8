"""An account's egress: what is accepted, what is shown (never proxy credentials), and how it is put
on the kiteconnect client — adapters bound to a source address, or proxies that win over the
environment's. Requests here go to a listener in this process on loopback, nowhere else."""
from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kiteconnect import KiteConnect
from requests.adapters import HTTPAdapter

from app.broker.egress import (Egress, InvalidEgress, SourceAddressAdapter, checked_proxy_url,
                               checked_source_address, masked_proxy_url, route)

OTHER_LOOPBACK = "127.0.0.2"


class Recorder(BaseHTTPRequestHandler):
    """Answers every GET with Kite's success envelope and records who asked for what."""

    seen: list[dict]

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.seen.append({"peer": self.client_address[0], "target": self.path,
                          "proxy_authorization": self.headers.get("Proxy-Authorization")})
        body = b'{"status": "success", "data": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def listener():
    """An HTTP listener on 127.0.0.1 in a thread; yields (root URL, requests seen)."""
    seen: list[dict] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_a_local_address_is_accepted_and_normalised():
    assert checked_source_address(" 127.0.0.2 ") == OTHER_LOOPBACK


@pytest.mark.parametrize("value, complaint", [
    ("10.255.255.1", "is not an address of this machine"),   # bind-checked only: nothing is sent
    ("0.0.0.0", "names no single interface"),
    ("224.0.0.1", "names no single interface"),
    ("127.0.0.300", "is not an IP address"),
    ("host.example", "is not an IP address"),
])
def test_addresses_that_cannot_be_a_source_are_refused(value, complaint):
    with pytest.raises(InvalidEgress, match=complaint):
        checked_source_address(value)


@pytest.mark.parametrize("url", ["http://203.0.113.7:3128", "https://user:p%40ss@proxy.example:8443",
                                 "http://[2001:db8::7]:3128/", "HTTP://proxy.example"])
def test_http_and_https_proxy_urls_are_accepted(url):
    assert checked_proxy_url(url) == url


@pytest.mark.parametrize("url, complaint", [
    ("socks5://203.0.113.7:1080", "starts with http:// or https://"),
    ("203.0.113.7:3128", "starts with http:// or https://"),
    ("http://", "names a host"),
    ("http://:3128", "names a host"),
    ("http://proxy.example:99999", "not a valid proxy URL"),
    ("http://proxy.example/some/path", "without a path or query"),
    ("http://proxy.example?x=1", "without a path or query"),
    ("http://proxy .example", "spaces or control characters"),
])
def test_malformed_proxy_urls_are_refused(url, complaint):
    with pytest.raises(InvalidEgress, match=complaint):
        checked_proxy_url(url)


def test_an_egress_is_one_route():
    with pytest.raises(InvalidEgress):
        Egress()
    with pytest.raises(InvalidEgress):
        Egress(source_address=OTHER_LOOPBACK, proxy="http://proxy.example:3128")
    with pytest.raises(InvalidEgress, match="not both"):
        Egress.checked(source_address=OTHER_LOOPBACK, proxy="http://proxy.example:3128")


@pytest.mark.parametrize("url, shown", [
    ("http://trader:s3cret@203.0.113.7:3128", "http://***@203.0.113.7:3128"),
    ("https://only-user@proxy.example", "https://***@proxy.example"),
    ("http://we:ird@pass@[2001:db8::7]:3128", "http://***@[2001:db8::7]:3128"),
    ("http://203.0.113.7:3128", "http://203.0.113.7:3128"),
])
def test_proxy_credentials_are_masked(url, shown):
    assert masked_proxy_url(url) == shown


def test_an_egress_never_shows_proxy_credentials():
    egress = Egress(proxy="http://trader:s3cret@203.0.113.7:3128")
    assert egress.public() == {"proxy": "http://***@203.0.113.7:3128"}
    for text in (repr(egress), str(egress), egress.describe(), f"{egress!r}"):
        assert "s3cret" not in text and "trader" not in text
    assert Egress(source_address=OTHER_LOOPBACK).public() == {"source_address": OTHER_LOOPBACK}


def test_source_address_adapter_binds_direct_and_proxy_connections():
    adapter = SourceAddressAdapter(OTHER_LOOPBACK)
    assert adapter.poolmanager.connection_pool_kw["source_address"] == (OTHER_LOOPBACK, 0)
    proxied = adapter.proxy_manager_for("http://203.0.113.7:3128")  # built, never connected
    assert proxied.connection_pool_kw["source_address"] == (OTHER_LOOPBACK, 0)


def test_without_egress_the_client_is_untouched():
    kite = KiteConnect("key", access_token="token", root="http://127.0.0.1:1")
    route(kite, None)
    for scheme in ("http://", "https://"):
        assert type(kite.reqsession.get_adapter(scheme + "broker.example/orders")) is HTTPAdapter
    assert kite.proxies == {}


def test_a_source_address_egress_sends_every_request_from_it(listener):
    root, seen = listener
    kite = KiteConnect("key", access_token="token", root=root)
    route(kite, Egress(source_address=OTHER_LOOPBACK))
    for scheme in ("http://", "https://"):
        adapter = kite.reqsession.get_adapter(scheme + "api.kite.trade/orders")
        assert isinstance(adapter, SourceAddressAdapter) and adapter.source_address == OTHER_LOOPBACK
    kite.orders()
    kite.orders()
    assert [r["peer"] for r in seen] == [OTHER_LOOPBACK, OTHER_LOOPBACK]


def test_a_proxy_egress_wins_over_the_environment_and_carries_its_credentials(listener, monkeypatch):
    proxy_root, seen = listener
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")   # nothing listens there: used, it would fail
    monkeypatch.setenv("NO_PROXY", "")
    broker_root = "http://127.0.0.1:1"                       # reached only through the proxy
    kite = KiteConnect("key", access_token="token", root=broker_root)
    route(kite, Egress(proxy=proxy_root.replace("http://", "http://trader:s3cret@")))
    assert kite.orders() == []
    (request,) = seen
    assert request["target"] == f"{broker_root}/orders"   # an absolute target: a request to a proxy
    assert request["proxy_authorization"] == "Basic " + base64.b64encode(b"trader:s3cret").decode()
