"""How an account's broker requests leave this service: its egress.

Since April 2026 Kite refuses order requests (place, modify, cancel) from an address that is not
among the static IPs registered for the account, and an IP may be shared only within a family.
One deployment trading for several accounts therefore sends each account's requests from the
account's own address: either a local address of this machine (outgoing connections bound to it)
or an HTTP(S) proxy on a small host that has the account's IP. No egress: the default route.

A proxy URL may carry credentials (`http://user:password@host:port`): the URL is stored
encrypted, and only its masked form (`http://***@host:port`) is ever shown.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from requests import Session
from requests.adapters import HTTPAdapter

PROXY_SCHEMES = ("http", "https")
MASK = "***"


class InvalidEgress(ValueError):
    """An egress that cannot be used: the message says why, for an API client or an operator."""


@dataclass(frozen=True)
class Egress:
    """Exactly one route: `source_address` (a local IP) or `proxy` (an http/https URL)."""

    source_address: str | None = None
    proxy: str | None = None

    def __post_init__(self) -> None:
        if (self.source_address is None) == (self.proxy is None):
            raise InvalidEgress("an egress is either a source_address or a proxy, not both and not neither")

    @classmethod
    def checked(cls, source_address: str | None = None, proxy: str | None = None) -> "Egress":
        """An egress from what an operator typed, refused (InvalidEgress) when it cannot work here."""
        if source_address is not None and proxy is not None:
            raise InvalidEgress("give either a source_address or a proxy, not both")
        if source_address is not None:
            return cls(source_address=checked_source_address(source_address))
        if proxy is not None:
            return cls(proxy=checked_proxy_url(proxy))
        raise InvalidEgress("give a source_address or a proxy")

    def public(self) -> dict:
        """What may be shown: the source address, or the proxy without its credentials."""
        if self.source_address is not None:
            return {"source_address": self.source_address}
        return {"proxy": masked_proxy_url(self.proxy)}

    def describe(self) -> str:
        return f"from {self.source_address}" if self.source_address else f"through {masked_proxy_url(self.proxy)}"

    def __repr__(self) -> str:  # never the proxy's credentials, whoever logs an Egress
        return f"Egress({self.describe()})"


def checked_source_address(value: str) -> str:
    """The address, normalised, if outgoing connections can be bound to it on this machine.

    Binding a socket to (ip, 0) asks the kernel whether the address is one of ours; nothing is
    sent anywhere.
    """
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise InvalidEgress(f"{value!r} is not an IP address") from None
    if address.is_unspecified or address.is_multicast:
        raise InvalidEgress(f"{address} cannot be a source address (it names no single interface)")
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError as exc:
        raise InvalidEgress(f"{address} is not an address of this machine: connections cannot be bound "
                            f"to it ({exc.strerror or exc})") from None
    return str(address)


def checked_proxy_url(value: str) -> str:
    """The URL if it is `http(s)://[user:password@]host[:port]` (checked as text: nothing is contacted)."""
    url = value.strip()
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise InvalidEgress("a proxy URL cannot contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        raise InvalidEgress(f"not a valid proxy URL: {exc}") from None
    if parts.scheme.lower() not in PROXY_SCHEMES:
        raise InvalidEgress("a proxy URL starts with http:// or https://")
    if not parts.hostname:
        raise InvalidEgress("a proxy URL names a host, e.g. http://203.0.113.7:3128")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidEgress("a proxy URL is scheme://[user:password@]host[:port], without a path or query")
    return url


def masked_proxy_url(url: str) -> str:
    """`http://user:password@host:3128` → `http://***@host:3128`; a URL without credentials as it is."""
    parts = urlsplit(url)
    _credentials, at, host = parts.netloc.rpartition("@")
    if not at:
        return url
    return parts._replace(netloc=f"{MASK}@{host}").geturl()


class SourceAddressAdapter(HTTPAdapter):
    """requests' adapter whose connections — direct or to a proxy — leave from one local address."""

    def __init__(self, source_address: str, **kwargs) -> None:
        self.source_address = source_address
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source_address, 0)
        return super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        # A proxy from the environment (HTTPS_PROXY) is reached from the account's address too.
        proxy_kwargs["source_address"] = (self.source_address, 0)
        return super().proxy_manager_for(proxy, **proxy_kwargs)


def route(kite, egress: Egress | None) -> None:
    """Send every later request of the kiteconnect client `kite` through `egress` (None: unchanged)."""
    if egress is None:
        return
    if egress.source_address is not None:
        mount_source_address(kite.reqsession, egress.source_address)
    else:
        # kiteconnect passes `proxies` with each request, where it wins over HTTP(S)_PROXY variables.
        kite.proxies = {"http": egress.proxy, "https": egress.proxy}


def mount_source_address(session: Session, source_address: str) -> None:
    adapter = SourceAddressAdapter(source_address)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
