"""API keys: no key 401, another account's key 403, admin passes, REST refuses `?api_key=`, hashed keys
(the key specification itself: tests/unit/web/test_api_keys.py; bearer tokens: test_jwt_auth.py)."""
import hashlib

import pytest

from app.web.auth import parse_api_keys


@pytest.fixture(scope="module")
def registered(accounts):
    # The session's accounts, with their paper-broker credentials: registering them here with made-up
    # ones (as this module once did) broke the broker checks of whatever ran after it.
    return accounts


def test_no_key_is_401(client, registered):
    response = client.get("/accounts/primary")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert client.get("/accounts/primary", headers={"X-API-Key": "wrong"}).status_code == 401


def test_other_accounts_key_is_403(client, headers, registered):
    response = client.get("/accounts/other", headers=headers["primary"])
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"
    assert client.get("/accounts/primary", headers=headers["primary"]).status_code == 200


def test_a_key_in_a_rest_query_string_is_refused(client, registered):
    # Query strings end up in proxies' and browsers' logs; only WebSocket URLs may carry a key.
    response = client.get("/accounts/other?api_key=test-admin-key")
    assert response.status_code == 401
    assert response.json["error"]["message"].startswith("?api_key= is accepted on WebSocket URLs only")
    assert "test-admin-key" not in response.get_data(as_text=True)
    assert client.get("/accounts/other?api_key=test-admin-key",
                      headers={"X-API-Key": "test-admin-key"}).status_code == 401


def test_a_hashed_key(app, client, registered, monkeypatch):
    digest = hashlib.sha256(b"a-key-kept-only-as-its-hash").hexdigest()
    monkeypatch.setitem(app.extensions, "api_keys", {**app.extensions["api_keys"], **parse_api_keys(
        f"sha256:{digest}=primary")})
    hashed = {"X-API-Key": "a-key-kept-only-as-its-hash"}
    assert client.get("/accounts/primary", headers=hashed).status_code == 200
    assert client.get("/accounts/other", headers=hashed).status_code == 403
    assert client.get("/accounts/primary", headers={"X-API-Key": digest}).status_code == 401


def test_admin_sees_every_account(client, headers, registered):
    listed = client.get("/accounts", headers=headers["primary"]).json
    assert [a["account_id"] for a in listed] == ["primary"]
    assert {"primary", "other"} <= {a["account_id"] for a in client.get("/accounts", headers=headers["admin"]).json}


def test_admin_only_operations(client, headers, registered):
    response = client.post("/accounts", headers=headers["primary"],
                           json={"account_id": "x1", "api_key": "k", "api_secret": "s"})
    assert response.status_code == 403


def test_open_endpoints_need_no_key(client):
    assert client.get("/health").status_code in (200, 503)
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200
