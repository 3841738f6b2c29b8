"""Pinned delivery connections (app/webhooks/pinned.py): the connection goes to the address that was
checked, and the receiver still sees the URL's host — in the Host header, as the TLS server name
and in the certificate check. Real servers on 127.0.0.1; the URLs name hosts under .test that
this test's resolver refuses (there is no DNS server here), so a second resolution would fail."""
from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.webhooks import pinned
from app.webhooks.pinned import PinnedAddressAdapter

NAME = "hooks.example.test"


class Server:
    """An HTTP(S) server on 127.0.0.1 answering every POST with `status` (and `location`)."""

    def __init__(self, tls: ssl.SSLContext | None = None, status: int = 200, location: str | None = None):
        self.hosts: list[str] = []  # the Host header of each request
        self.server_names: list[str | None] = []  # the TLS server name (SNI) of each handshake
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.hosts.append(self.headers["Host"])
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(**kwargs) -> Server:
        started.append(Server(**kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture(autouse=True)
def lookups(monkeypatch):
    """Every host resolved during the test; .test names fail, as they would without DNS."""
    real, asked = socket.getaddrinfo, []

    def getaddrinfo(host, *args, **kwargs):
        asked.append(host)
        if str(host).endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A CA (its PEM file, to trust) and a server context whose certificate names only NAME."""
    def key_and_name(common_name):
        return ec.generate_private_key(ec.SECP256R1()), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                                      common_name)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, ca_name = key_and_name("test CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key, name = key_and_name(NAME)
    leaf = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(2).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def server_context() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / "server.pem")
        return context

    return str(folder / "ca.pem"), server_context


def test_the_request_goes_to_the_checked_address_with_the_urls_host(servers, lookups):
    server = servers()
    response = pinned.post(f"http://{NAME}:{server.port}/hook", ["127.0.0.1"], b"{}", {}, timeout=5)
    assert response.status_code == 200
    assert server.hosts == [f"{NAME}:{server.port}"]
    assert NAME not in lookups  # never resolved: the checked address was used


def test_the_next_checked_address_is_tried_when_one_refuses_the_connection(servers, lookups):
    server = servers()  # listens on 127.0.0.1 only: ::1 refuses (or has no route)
    response = pinned.post(f"http://{NAME}:{server.port}/hook", ["::1", "127.0.0.1"], b"{}", {}, timeout=5)
    assert response.status_code == 200 and len(server.hosts) == 1
    assert NAME not in lookups


def test_a_redirect_is_not_followed(servers):
    elsewhere = servers()
    server = servers(status=302, location=f"http://127.0.0.1:{elsewhere.port}/internal")
    response = pinned.post(f"http://{NAME}:{server.port}/hook", ["127.0.0.1"], b"{}", {}, timeout=5)
    assert response.status_code == 302 and elsewhere.hosts == []


def test_tls_presents_and_verifies_the_urls_host_at_the_checked_address(servers, tls, lookups):
    ca_file, server_context = tls
    server = servers(tls=server_context())
    with requests.Session() as session:
        session.mount("https://", PinnedAddressAdapter(NAME, "127.0.0.1"))
        response = session.post(f"https://{NAME}:{server.port}/hook", data=b"{}", verify=ca_file, timeout=5)
    assert response.status_code == 200
    assert server.server_names == [NAME]  # SNI: the name, not the address
    assert server.hosts == [f"{NAME}:{server.port}"]
    assert NAME not in lookups


def test_tls_to_the_checked_address_fails_for_a_name_its_certificate_does_not_cover(servers, tls):
    ca_file, server_context = tls
    server = servers(tls=server_context())
    with requests.Session() as session:
        session.mount("https://", PinnedAddressAdapter("other.example.test", "127.0.0.1"))
        with pytest.raises(requests.exceptions.SSLError):
            session.post(f"https://other.example.test:{server.port}/hook", data=b"{}", verify=ca_file, timeout=5)
    assert server.hosts == []


def test_the_adapter_serves_only_the_host_it_was_pinned_for(servers):
    server = servers()
    with requests.Session() as session:
        session.mount("http://", PinnedAddressAdapter(NAME, "127.0.0.1"))
        with pytest.raises(requests.exceptions.InvalidURL, match="pinned"):
            session.post(f"http://elsewhere.test:{server.port}/hook", data=b"{}", timeout=5)
    assert server.hosts == []


def test_no_proxy_from_the_environment_is_used(servers, monkeypatch):
    server = servers()
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: using it would fail
    monkeypatch.setenv("NO_PROXY", "")
    response = pinned.post(f"http://{NAME}:{server.port}/hook", ["127.0.0.1"], b"{}", {}, timeout=5)
    assert response.status_code == 200


def test_ipv6_addresses_are_pinned_too():
    adapter = PinnedAddressAdapter(NAME, "2606:4700::1111")
    request = requests.Request("POST", f"https://{NAME}/hook").prepare()
    host_params, pool_kwargs = adapter.build_connection_pool_key_attributes(request, True)
    assert host_params["host"] == str(ipaddress.ip_address("2606:4700::1111"))
    assert pool_kwargs["server_hostname"] == pool_kwargs["assert_hostname"] == NAME
