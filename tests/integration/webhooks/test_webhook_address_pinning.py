"""Deliveries go only where the private-address check looked: the name is resolved once, every
answer checked, and the connection made to a checked address (the URL's host still in the Host
header), so a DNS answer that changes between check and connect (DNS rebinding) leads nowhere;
private addresses in disguise are refused before anything is sent.

The resolver is monkeypatched (socket.getaddrinfo): there is no DNS server here to rebind. The
receivers are real servers on 127.0.0.1, attempts run in this process (delivery.attempt)."""
from __future__ import annotations

import dataclasses
import socket

import pytest

from app.core.db import session_scope
from app.webhooks import delivery
from app.webhooks.settings import webhook_settings

NAME = "hooks.example.test"
PUBLIC = "93.184.215.14"  # a public address; nothing reaches it (see `connections`)
EVENT = "order_failed"

pytestmark = pytest.mark.usefixtures("accounts")


@pytest.fixture
def resolver(monkeypatch):
    """`resolver.answers`: NAME's address at the first question, the second, ... (the last one
    repeats); `resolver.asked`: how many times NAME was resolved. Other hosts resolve as usual."""
    real = socket.getaddrinfo

    class Resolver:
        answers: list[str] = []
        asked = 0

        @classmethod
        def getaddrinfo(cls, host, port, *args, **kwargs):
            if host != NAME:
                return real(host, port, *args, **kwargs)
            address = cls.answers[min(cls.asked, len(cls.answers) - 1)]
            cls.asked += 1
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", Resolver.getaddrinfo)
    return Resolver


@pytest.fixture
def connections(monkeypatch):
    """Every (address, port) a delivery connects to. The public internet is no part of the tests:
    a connection to PUBLIC is refused here (as a receiver that is down would)."""
    from urllib3.util import connection

    real, made = connection.create_connection, []

    def create_connection(address, *args, **kwargs):
        made.append(address)
        if address[0] == PUBLIC:
            raise ConnectionRefusedError(111, "Connection refused (the test's stand-in for the internet)")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(connection, "create_connection", create_connection)
    return made


def one_delivery() -> str:
    with session_scope() as session:
        [delivery_id] = delivery.create_deliveries(session, "primary", EVENT,
                                                   {"order_id": "pinning", "status": "REJECTED"})
    return delivery_id


def strict():
    """The production setting: no private receivers (the tests allow them for 127.0.0.1 receivers)."""
    return dataclasses.replace(webhook_settings(), allow_private=False)


def test_a_dns_answer_that_changes_after_the_check_cannot_redirect_the_delivery(receiver, register, resolver,
                                                                                connections):
    hook = receiver()
    register(f"http://{NAME}:{hook.port}/hook", [EVENT])
    resolver.answers = [PUBLIC, "127.0.0.1"]  # public when checked, loopback when asked again

    result = delivery.attempt(one_delivery(), settings=strict())
    assert hook.requests == []  # the receiver on 127.0.0.1 was never reached
    assert connections == [(PUBLIC, hook.port)]  # only the checked address was connected to
    assert resolver.asked == 1  # no second resolution between check and connect
    assert result.status == "PENDING" and "ConnectionError" in result.error  # retried, checked again


def test_the_delivery_connects_to_the_checked_address_with_the_urls_host(receiver, register, resolver, connections):
    hook = receiver()
    register(f"http://{NAME}:{hook.port}/hook", [EVENT])
    resolver.answers = ["127.0.0.1", PUBLIC]  # a second resolution would go elsewhere

    result = delivery.attempt(one_delivery())  # private receivers allowed, as in tests and on premises
    assert result.status == "DELIVERED"
    [sent] = hook.requests
    assert sent.headers["Host"] == f"{NAME}:{hook.port}"
    assert "X-Webhook-Secret" not in sent.headers
    assert connections == [("127.0.0.1", hook.port)] and resolver.asked == 1


@pytest.mark.parametrize("host", ["[::127.0.0.1]", "[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]",
                                  "0x7f.1", "2130706433", "127.1"])
def test_private_addresses_in_disguise_are_refused_at_delivery(receiver, register, connections, host):
    """Registered while private receivers were allowed; with them disallowed nothing is sent."""
    hook = receiver()
    register(f"http://{host}:{hook.port}/hook", [EVENT])
    result = delivery.attempt(one_delivery(), settings=strict())
    assert result.status == "FAILED" and "refused before sending" in result.error
    assert "non-public address" in result.error
    assert hook.requests == [] and connections == []


def test_a_name_resolving_to_a_nat64_loopback_is_refused_at_delivery(receiver, register, resolver, connections):
    hook = receiver()
    register(f"http://{NAME}:{hook.port}/hook", [EVENT])
    resolver.answers = ["64:ff9b::7f00:1"]
    result = delivery.attempt(one_delivery(), settings=strict())
    assert result.status == "FAILED" and "non-public address (64:ff9b::7f00:1)" in result.error
    assert hook.requests == [] and connections == []
