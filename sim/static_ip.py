"""Kite's static-IP rule (SEBI retail-algo rules, live from 1 Apr 2026): an app with registered IPs may
place, modify and cancel orders only from them; every other endpoint and the ticker work from anywhere.

Kite does not publish the refusal's status or text; ours (our choice) is HTTP 403 `PermissionException`,
which the official client raises as `kiteconnect.exceptions.PermissionException`.
"""
from __future__ import annotations

import ipaddress

from .errors import KiteError

MAX_STATIC_IPS = 2   # a primary and an optional secondary
# (method, route) of the order requests the rule covers
ORDER_REQUESTS = {("POST", "/orders/{variety}"), ("PUT", "/orders/{variety}/{order_id}"),
                  ("DELETE", "/orders/{variety}/{order_id}")}


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.strip())
    mapped = getattr(address, "ipv4_mapped", None)   # ::ffff:1.2.3.4 is 1.2.3.4 reaching a dual-stack socket
    return mapped or address


def parse_allowed_ips(value) -> tuple[str, ...]:
    """`allowed_ips` of POST /_sim/accounts: null or [] clears; else at most 2 IPv4/IPv6 addresses.
    ValueError says what is wrong."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("allowed_ips must be a list of IP address strings (or null to clear)")
    if len(value) > MAX_STATIC_IPS:
        raise ValueError(f"allowed_ips: at most {MAX_STATIC_IPS} addresses (a primary and a secondary)")
    try:
        addresses = [_address(v) for v in value]
    except ValueError as exc:
        raise ValueError(f"allowed_ips: {exc}") from None
    return tuple(dict.fromkeys(str(a) for a in addresses))


def check_order_source(allowed_ips: tuple[str, ...], method: str, route: str, remote: str | None) -> None:
    """Raise the refusal if this is an order request from an address outside the account's static IPs."""
    if not allowed_ips or (method, route) not in ORDER_REQUESTS:
        return
    try:
        source = str(_address(remote or ""))
    except ValueError:
        source = remote or "unknown"
    if source not in allowed_ips:
        action = {"POST": "placement", "PUT": "modification", "DELETE": "cancellation"}[method]
        raise KiteError(f"Order {action} is not allowed from IP {source}: it is not among the static IPs "
                        f"registered for this app.", "PermissionException", 403)
