"""An account's egress through the API and the CLI: registered, shown (a proxy's credentials masked,
and stored encrypted), changed and cleared; values that cannot work are refused naming the field.

Source addresses are checked by binding a socket on this machine (10.255.255.1 is not one of its
addresses): nothing is sent anywhere. Proxy URLs are checked as text only.
"""
from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.models import Account

STATIC_IP = "127.0.0.2"
PROXY = "http://trader:s3cret-pw@203.0.113.7:3128"
MASKED_PROXY = "http://***@203.0.113.7:3128"


def new_account_body(**changes) -> dict:
    suffix = secrets.token_hex(4)
    body = {"account_id": f"egress-{suffix}", "api_key": f"k-{suffix}", "api_secret": "secret",
            "access_token": "token"}
    body.update(changes)
    return body


def stored(account_id: str) -> Account:
    with session_scope() as session:
        account = session.scalars(select(Account).where(Account.id == account_id)).one()
        session.expunge(account)
        return account


def test_egress_is_registered_shown_changed_and_cleared(client, headers):
    admin = headers["admin"]
    body = new_account_body(egress={"source_address": STATIC_IP})
    account_id = body["account_id"]
    created = client.post("/accounts", headers=admin, json=body)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["egress"] == {"source_address": STATIC_IP}
    assert client.get(f"/accounts/{account_id}", headers=admin).get_json()["egress"] == {"source_address": STATIC_IP}
    assert client.get("/health", headers=admin).get_json()["egress"][account_id] == {"source_address": STATIC_IP}

    changed = client.patch(f"/accounts/{account_id}", headers=admin, json={"egress": {"proxy": PROXY}})
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["egress"] == {"proxy": MASKED_PROXY}
    for response in (changed, client.get(f"/accounts/{account_id}", headers=admin),
                     client.get("/accounts", headers=admin), client.get("/health", headers=admin)):
        assert "s3cret-pw" not in response.get_data(as_text=True)
    assert client.get("/health", headers=admin).get_json()["egress"][account_id] == {"proxy": MASKED_PROXY}
    account = stored(account_id)
    assert account.egress_source_address is None
    assert account.egress_proxy_enc and "s3cret-pw" not in account.egress_proxy_enc   # encrypted at rest

    cleared = client.patch(f"/accounts/{account_id}", headers=admin, json={"egress": None})
    assert cleared.status_code == 200 and cleared.get_json()["egress"] is None
    assert client.get(f"/accounts/{account_id}", headers=admin).get_json()["egress"] is None
    assert client.get("/health", headers=admin).get_json()["egress"][account_id] is None
    account = stored(account_id)
    assert account.egress_source_address is None and account.egress_proxy_enc is None


def test_accounts_without_egress_show_the_default_route(client, headers):
    body = new_account_body()
    created = client.post("/accounts", headers=headers["admin"], json=body)
    assert created.status_code == 201 and created.get_json()["egress"] is None
    account = stored(body["account_id"])
    assert account.egress_source_address is None and account.egress_proxy_enc is None


INVALID_EGRESS = [
    ({"source_address": "10.255.255.1"}, "source_address", "10.255.255.1 is not an address of this machine"),
    ({"source_address": "0.0.0.0"}, "source_address", "names no single interface"),
    ({"source_address": "not-an-ip"}, "source_address", "'not-an-ip' is not an IP address"),
    ({"source_address": 127}, "source_address", "Not a valid string."),
    ({"proxy": "socks5://203.0.113.7:1080"}, "proxy", "a proxy URL starts with http:// or https://"),
    ({"proxy": "http://"}, "proxy", "a proxy URL names a host"),
    ({"proxy": "http://203.0.113.7:3128/path"}, "proxy", "without a path or query"),
    ({}, "_schema", "give either source_address or proxy"),
    ({"source_address": STATIC_IP, "proxy": PROXY}, "_schema", "give either source_address or proxy"),
    ({"interface": "eth0"}, "interface", "Unknown field."),
]


@pytest.mark.parametrize("egress, field, complaint", INVALID_EGRESS)
def test_invalid_egress_is_refused_at_registration(client, headers, egress, field, complaint):
    body = new_account_body(egress=egress)
    response = client.post("/accounts", headers=headers["admin"], json=body)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert complaint in error["details"]["egress"][field][0]
    assert complaint in error["message"]
    assert "s3cret-pw" not in response.get_data(as_text=True)
    assert client.get(f"/accounts/{body['account_id']}", headers=headers["admin"]).status_code == 404


@pytest.mark.parametrize("egress, field, complaint", INVALID_EGRESS)
def test_invalid_egress_is_refused_on_change_and_nothing_changes(client, headers, egress, field, complaint):
    body = new_account_body(egress={"source_address": STATIC_IP})
    assert client.post("/accounts", headers=headers["admin"], json=body).status_code == 201
    response = client.patch(f"/accounts/{body['account_id']}", headers=headers["admin"], json={"egress": egress})
    assert response.status_code == 422, response.get_json()
    assert complaint in response.get_json()["error"]["details"]["egress"][field][0]
    shown = client.get(f"/accounts/{body['account_id']}", headers=headers["admin"]).get_json()
    assert shown["egress"] == {"source_address": STATIC_IP}


def test_changing_egress_needs_an_admin_key_an_account_and_the_field(client, headers):
    body = new_account_body()
    assert client.post("/accounts", headers=headers["admin"], json=body).status_code == 201
    path = f"/accounts/{body['account_id']}"
    assert client.patch(path, headers=headers["primary"], json={"egress": None}).status_code == 403
    assert client.patch(path, json={"egress": None}).status_code == 401
    missing = client.patch(path, headers=headers["admin"], json={})
    assert missing.status_code == 422 and "egress" in missing.get_json()["error"]["details"]
    not_object = client.patch(path, headers=headers["admin"], json={"egress": STATIC_IP})
    assert not_object.status_code == 422 and "egress" in not_object.get_json()["error"]["details"]
    assert client.patch("/accounts/no-such-account", headers=headers["admin"],
                        json={"egress": None}).status_code == 404


def test_cli_registers_egress_and_refuses_what_cannot_work(app):
    runner = app.test_cli_runner()
    suffix = secrets.token_hex(4)

    def add(account_id, *flags):
        return runner.invoke(args=["accounts", "add", account_id, "--api-key", f"k-{suffix}",
                                   "--api-secret", "secret", "--access-token", "token", *flags])

    by_address = add(f"cli-src-{suffix}", "--egress-source", STATIC_IP)
    assert by_address.exit_code == 0, by_address.output
    assert f"its order requests go from {STATIC_IP}" in by_address.output
    assert stored(f"cli-src-{suffix}").egress_source_address == STATIC_IP

    by_proxy = add(f"cli-proxy-{suffix}", "--egress-proxy", PROXY)
    assert by_proxy.exit_code == 0, by_proxy.output
    assert f"through {MASKED_PROXY}" in by_proxy.output and "s3cret-pw" not in by_proxy.output
    listing = runner.invoke(args=["accounts", "list"]).output
    assert f"cli-src-{suffix}" in listing and f"orders go from {STATIC_IP}" in listing
    assert f"orders go through {MASKED_PROXY}" in listing and "s3cret-pw" not in listing

    refused = {
        "both": add(f"cli-both-{suffix}", "--egress-source", STATIC_IP, "--egress-proxy", PROXY),
        "not local": add(f"cli-far-{suffix}", "--egress-source", "10.255.255.1"),
        "not a proxy": add(f"cli-ftp-{suffix}", "--egress-proxy", "ftp://203.0.113.7"),
    }
    assert "--egress-source and --egress-proxy are mutually exclusive" in refused["both"].output
    assert "Invalid value for '--egress-source': 10.255.255.1 is not an address of this machine" in \
        refused["not local"].output
    assert "Invalid value for '--egress-proxy': a proxy URL starts with http:// or https://" in \
        refused["not a proxy"].output
    for result in refused.values():
        assert result.exit_code == 2, result.output
    with session_scope() as session:
        assert session.scalars(select(Account.id).where(Account.id.in_(
            [f"cli-both-{suffix}", f"cli-far-{suffix}", f"cli-ftp-{suffix}"]))).all() == []


def test_cached_clients_are_rebuilt_when_the_egress_or_the_session_changes(client, headers):
    """Each process keeps one client per account; the account's version token in Redis (not this
    process's own cache clearing: PATCH forgets nothing locally) tells it the client is stale."""
    from requests.adapters import HTTPAdapter

    from app import accounts as account_service
    from app.broker.client import broker_client
    from app.broker.egress import SourceAddressAdapter

    admin = headers["admin"]
    body = new_account_body(egress={"source_address": STATIC_IP})
    account_id = body["account_id"]
    assert client.post("/accounts", headers=admin, json=body).status_code == 201

    bound = broker_client(account_id)
    assert broker_client(account_id) is bound                  # unchanged account: the same client
    adapter = bound.reqsession.get_adapter("https://api.kite.trade/orders")
    assert isinstance(adapter, SourceAddressAdapter) and adapter.source_address == STATIC_IP

    assert client.patch(f"/accounts/{account_id}", headers=admin, json={"egress": None}).status_code == 200
    direct = broker_client(account_id)
    assert direct is not bound
    assert type(direct.reqsession.get_adapter("https://api.kite.trade/orders")) is HTTPAdapter
    assert direct.proxies == {}

    assert client.patch(f"/accounts/{account_id}", headers=admin, json={"egress": {"proxy": PROXY}}).status_code == 200
    proxied = broker_client(account_id)
    assert proxied.proxies == {"http": PROXY, "https": PROXY}

    with session_scope() as session:
        account_service.set_access_token(session, account_id, "renewed-token", None)
    renewed = broker_client(account_id)
    assert renewed is not proxied and renewed.access_token == "renewed-token"
    assert renewed.proxies == {"http": PROXY, "https": PROXY}
