"""Which receiver addresses are refused (app/webhooks/url_safety.py): every form that reaches a
loopback, private or reserved address — IPv4 written as a number, IPv6 carrying an IPv4 address
(mapped, compatible, NAT64, 6to4) — while the same forms of a public address pass."""
from __future__ import annotations

import socket

import pytest

from app.webhooks.url_safety import UnsafeUrl, check_registration, is_public, literal_address, resolve_public

LOOPBACK_FORMS = [
    "::127.0.0.1",  # IPv4-compatible IPv6
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:0:127.0.0.1",  # IPv4-translated (SIIT)
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::10.0.0.1",  # NAT64 of a private address
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:c0a8:1::1",  # 6to4 of 192.168.0.1
]
NUMERIC_LOOPBACK = ["0x7f.1", "017700000001", "2130706433", "127.1", "0x7f000001", "127.0.0.1.", "127.000.000.001",
                    "0177.0.0.1", "0x7F.0.0.0x1"]


@pytest.mark.parametrize("address", LOOPBACK_FORMS + [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "::1", "::", "fe80::1", "fc00::1", "64:ff9b:1::808:808", "::8.8.8.8", "224.0.0.1", "ff02::1",
    "2001::1",  # Teredo
])
def test_private_and_reserved_addresses_in_every_form_are_not_public(address):
    assert not is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8",
                                     "2002:808:808::"])
def test_public_addresses_are_public_in_the_forms_that_reach_them(address):
    assert is_public(address)


@pytest.mark.parametrize("host", NUMERIC_LOOPBACK)
def test_numeric_ipv4_hosts_are_read_as_resolvers_read_them(host):
    assert str(literal_address(host)) == "127.0.0.1"


@pytest.mark.parametrize("host", ["example.com", "08", "1.2.3.4.5", "256.1.1.1", "0x1.example", "1..2", "-1", "+1",
                                  "1_0"])
def test_names_are_not_numeric_addresses(host):
    assert literal_address(host) is None


@pytest.mark.parametrize("url", [f"http://{host}/hook" for host in NUMERIC_LOOPBACK] + [
    f"http://[{address}]:8080/hook" for address in LOOPBACK_FORMS] + [
    "http://localhost./hook", "http://a.localhost/hook", "https://[fe80::1%25eth0]/"])
def test_registration_refuses_them(url):
    with pytest.raises(UnsafeUrl, match="loopback"):
        check_registration(url, allow_private=False)
    check_registration(url, allow_private=True)  # tests and on-premises receivers


@pytest.mark.parametrize("url", ["https://hooks.example.com/t", "http://8.8.8.8/", "http://[64:ff9b::8.8.8.8]/",
                                 "http://0x08.0x08.0x08.0x08/"])
def test_registration_accepts_public_receivers(url):
    check_registration(url, allow_private=False)


@pytest.fixture
def dns(monkeypatch):
    """`dns[name] = [addresses]`: the resolver's answers (no DNS server here); other names fail."""
    answers: dict[str, list[str]] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_resolution_keeps_the_resolvers_order(dns):
    dns["hooks.example.com"] = ["2606:4700::1111", "8.8.8.8", "2606:4700::1111"]
    assert resolve_public("https://hooks.example.com/t", allow_private=False) == ["2606:4700::1111", "8.8.8.8"]


@pytest.mark.parametrize("answer", [["8.8.8.8", "127.0.0.1"], ["::ffff:127.0.0.1"], ["64:ff9b::a00:1"],
                                    ["::127.0.0.1"]])
def test_one_private_answer_refuses_the_delivery(dns, answer):
    dns["hooks.example.com"] = answer
    with pytest.raises(UnsafeUrl, match="non-public address"):
        resolve_public("https://hooks.example.com/t", allow_private=False)
    assert resolve_public("https://hooks.example.com/t", allow_private=True)


def test_a_numeric_host_is_resolved_as_the_address_it_names(dns):
    dns["127.0.0.1"] = ["127.0.0.1"]  # the resolver is asked for the address, not for the number
    with pytest.raises(UnsafeUrl, match="non-public"):
        resolve_public("http://2130706433/hook", allow_private=False)


def test_an_unknown_name_cannot_be_resolved(dns):
    with pytest.raises(UnsafeUrl, match="^cannot resolve nowhere.example.com"):
        resolve_public("https://nowhere.example.com/", allow_private=False)
