"""Sending a delivery to the addresses url_safety checked, not to what the name resolves to later.

Left to itself, requests resolves the URL's host again when it connects, and a DNS answer that
changed since the check (DNS rebinding) would take the delivery to a private address. The
adapter here connects to a checked address and still speaks to the URL's host: the Host header,
the TLS server name (SNI) and the certificate check all use the name from the URL.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import InvalidURL
from urllib3.exceptions import ConnectTimeoutError


class PinnedAddressAdapter(HTTPAdapter):
    """requests' adapter that connects to `address` for requests to `host`, and refuses other hosts."""

    def __init__(self, host: str, address: str, **kwargs) -> None:
        self.host = host
        self.address = address
        super().__init__(**kwargs)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params["host"] != self.host:  # a session reused for another URL: never unchecked
            raise InvalidURL(f"this connection is pinned for {self.host}, not {host_params['host']}")
        host_params["host"] = self.address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = self.host
            pool_kwargs["assert_hostname"] = self.host
        return host_params, pool_kwargs

    def send(self, request, **kwargs):
        kwargs["proxies"] = None  # a proxy would resolve the name itself, undoing the pin
        return super().send(request, **kwargs)

    def add_headers(self, request, **kwargs) -> None:
        # urllib3 would name the connection's host, the address; the receiver expects the URL's.
        request.headers["Host"] = urlsplit(request.url).netloc.rpartition("@")[2]


def post(url: str, addresses: list[str], body: bytes, headers: dict[str, str],
         timeout: float) -> requests.Response:
    """POST to the first of the checked `addresses` that accepts a connection (in the resolver's
    order, as a plain request would); never follows a redirect, never uses a proxy."""
    with requests.Session() as session:
        session.trust_env = False  # no proxy or .netrc from the environment
        request = session.prepare_request(requests.Request("POST", url, data=body, headers=headers))
        host = urlsplit(request.url).hostname  # as requests wrote it (IDNA), so the adapter matches it
        for index, address in enumerate(addresses):
            adapter = PinnedAddressAdapter(host, address)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            try:
                return session.send(request, timeout=timeout, allow_redirects=False)
            except requests.ConnectionError as exc:
                if index == len(addresses) - 1 or not _never_connected(exc):
                    raise
                adapter.close()
    raise requests.ConnectionError("no address to connect to")


def _never_connected(exc: requests.ConnectionError) -> bool:
    """Whether the attempt failed before a connection existed (nothing sent: the next address may
    be tried without a duplicate delivery). urllib3's NewConnectionError is a ConnectTimeoutError."""
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(reason, ConnectTimeoutError)
