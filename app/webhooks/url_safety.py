"""Which receiver URLs are allowed: http(s) only, and no loopback/private/link-local
address unless WEBHOOK_ALLOW_PRIVATE (an open webhook registry is otherwise an SSRF
door into the service's own network). Checked at registration and again at delivery,
after DNS resolution; delivery then connects to the address checked here (see pinned.py),
so a DNS answer that changes in between cannot steer it elsewhere.

An address is judged by where a connection to it ends up: an IPv6 address that carries an
IPv4 address (mapped, NAT64, 6to4) reaches that IPv4 address, and a host written as a number
("2130706433", "0x7f.1", "127.1") is read as an IPv4 address by resolvers.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

# IPv6 ranges whose low 32 bits are an IPv4 address that a connection reaches (the kernel or a
# translator unwraps it): that IPv4 address decides.
_IPV4_IN_LOW_BITS = tuple(ipaddress.ip_network(net) for net in (
    "::ffff:0:0/96",  # IPv4-mapped
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    "64:ff9b::/96",  # NAT64, well-known prefix: an IPv6-only network's way to public IPv4 hosts
))
# Never a public receiver, though Python 3.11's ipaddress calls them global.
_NEVER_PUBLIC = tuple(ipaddress.ip_network(net) for net in (
    "::/96",  # IPv4-compatible (deprecated; "::127.0.0.1"), and :: and ::1
    "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): a site's own translator, IPv4 placed as it chooses
))
_IPV4_NUMBER = re.compile(r"0x[0-9a-f]*|0[0-7]*|[1-9][0-9]*", re.IGNORECASE)


class UnsafeUrl(ValueError):
    """The URL is not one the service will call. The message names the host, never more."""


def _parse(url: str) -> tuple[str, int]:
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


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host written in inet_aton's forms names ("2130706433", "017700000001",
    "0x7f.1", "127.1"; a trailing dot allowed), or None for a host that is not one."""
    parts = (host[:-1] if host.endswith(".") else host).split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_NUMBER.fullmatch(part) for part in parts):
        return None
    *leading, last = [_ipv4_number(part) for part in parts]
    if any(n > 255 for n in leading) or last >= 256 ** (4 - len(leading)):
        return None  # names no address; resolving it fails too
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _ipv4_number(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    return int(part, 8) if part.startswith("0") else int(part)


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a URL's host names without DNS: an IP literal or a numeric IPv4 form."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return numeric_ipv4(host)


def reached_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a connection to `ip` reaches, when `ip` carries one."""
    if ip.sixtofour is not None:  # 2002::/16: 6to4 relays unwrap it
        return ip.sixtofour
    if any(ip in net for net in _IPV4_IN_LOW_BITS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(address) -> bool:
    """Whether a connection to `address` (text or ipaddress object) reaches the public internet only."""
    ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if any(ip in net for net in _NEVER_PUBLIC):
            return False
        ipv4 = reached_ipv4(ip)
        if ipv4 is not None:
            return is_public(ipv4)
    return ip.is_global and not ip.is_multicast


def check_registration(url: str, allow_private: bool) -> None:
    """Shape, and the address when the host is one (a name is checked after resolution, at delivery)."""
    host, _port = _parse(url)
    if allow_private:
        return
    name = host.lower().rstrip(".")
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        raise UnsafeUrl("loopback receivers are not allowed")
    literal = literal_address(host)
    if literal is not None and not is_public(literal):
        raise UnsafeUrl(f"{host} is a loopback, private or reserved address")


def resolve_public(url: str, allow_private: bool) -> list[str]:
    """At delivery time: resolve once; every address must be public. The addresses come in the
    resolver's order of preference, and delivery connects to one of them, never resolving again."""
    host, port = _parse(url)
    literal = literal_address(host)
    try:
        infos = socket.getaddrinfo(str(literal) if literal is not None else host, port,
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"cannot resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        blocked = [a for a in addresses if not is_public(a)]
        if blocked:
            raise UnsafeUrl(f"{host} resolves to a non-public address ({', '.join(blocked)})")
    return addresses
