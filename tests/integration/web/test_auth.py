"""API keys: no key 401, another account's key 403, admin passes (the key specification itself:
tests/unit/web/test_api_keys.py)."""
import pytest


@pytest.fixture(scope="module")
def registered(app, headers):
    client = app.test_client()
    for account_id in ("primary", "other"):
        client.post("/accounts", headers=headers["admin"],
                    json={"account_id": account_id, "api_key": f"ak-{account_id}", "api_secret": "s"})


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


def test_query_string_key_and_admin(client, headers, registered):
    assert client.get("/accounts/other?api_key=test-admin-key").status_code == 200
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
