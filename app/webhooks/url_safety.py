"""Which receiver URLs are allowed: http(s) only, and no loopback/private/link-local
address unless WEBHOOK_ALLOW_PRIVATE (an open webhook registry is otherwise an SSRF
door into the service's own network). Checked at registration and again at delivery,
after DNS resolution."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeUrl(ValueError):
    """The URL is not one the service will call."""


def _parse(url: str):
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("the URL must be http or https")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("credentials in the URL are not allowed; sign with the secret instead")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_registration(url: str, allow_private: bool) -> None:
    """Shape and, when the host is a literal address or resolves, its addresses."""
    host, _port = _parse(url)
    if allow_private:
        return
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        raise UnsafeUrl("loopback receivers are not allowed")
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None and not is_public(str(literal)):
        raise UnsafeUrl(f"{host} is a loopback, private or reserved address")


def resolve_public(url: str, allow_private: bool) -> list[str]:
    """At delivery time: every address the host resolves to must be public."""
    host, port = _parse(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUrl(f"cannot resolve {host}: {exc}") from None
    addresses = sorted({info[4][0] for info in infos})
    if not allow_private:
        blocked = [a for a in addresses if not is_public(a)]
        if blocked:
            raise UnsafeUrl(f"{host} resolves to a non-public address ({', '.join(blocked)})")
    return addresses
