"""Registration, listing, deletion and validation of webhooks; the secret never comes back."""
from __future__ import annotations

import dataclasses
import json
import logging

import pytest


@pytest.fixture
def no_private_receivers(app):
    settings = app.config["SETTINGS"]
    app.config["SETTINGS"] = dataclasses.replace(settings, webhook_allow_private=False)
    yield
    app.config["SETTINGS"] = settings


def test_register_list_delete(client, headers, accounts):
    body = {"url": "https://hooks.example.com/t", "account_id": "primary",
            "events": ["order_completed", "order_failed"], "secret": "abc"}
    created = client.post("/advanced/webhooks", headers=headers["primary"], json=body)
    assert created.status_code == 201
    hook = created.get_json()
    assert set(hook) >= {"webhook_id", "url", "active", "events", "account_id"}
    assert (hook["url"], hook["active"], hook["events"], hook["account_id"], hook["legacy_secret_header"]) == \
        (body["url"], True, ["order_completed", "order_failed"], "primary", False)
    assert "secret" not in hook and "secret_enc" not in hook

    listed = client.get("/advanced/webhooks", headers=headers["primary"]).get_json()
    assert hook["webhook_id"] in [w["webhook_id"] for w in listed]
    assert all("secret" not in w and w["account_id"] == "primary" for w in listed)
    assert hook["webhook_id"] not in [w["webhook_id"] for w in
                                      client.get("/advanced/webhooks", headers=headers["other"]).get_json()]
    assert hook["webhook_id"] in [w["webhook_id"] for w in
                                  client.get("/advanced/webhooks", headers=headers["admin"]).get_json()]

    assert client.delete(f"/advanced/webhooks/{hook['webhook_id']}", headers=headers["other"]).status_code == 404
    assert client.get(f"/advanced/webhooks/{hook['webhook_id']}/deliveries",
                      headers=headers["other"]).status_code == 404
    assert client.delete(f"/advanced/webhooks/{hook['webhook_id']}", headers=headers["primary"]).status_code == 204
    assert client.delete(f"/advanced/webhooks/{hook['webhook_id']}", headers=headers["primary"]).status_code == 404
    assert hook["webhook_id"] not in [w["webhook_id"] for w in
                                      client.get("/advanced/webhooks", headers=headers["primary"]).get_json()]
    # The delivery log of a deleted webhook stays readable.
    assert client.get(f"/advanced/webhooks/{hook['webhook_id']}/deliveries",
                      headers=headers["primary"]).status_code == 200


GOOD = {"url": "https://hooks.example.com/t", "account_id": "primary", "events": ["order_completed"], "secret": "abc"}


@pytest.mark.parametrize("change, field", [
    ({"url": "ftp://hooks.example.com/t"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"url": "http://user:pw@hooks.example.com/"}, "url"),
    ({"events": ["order_exploded"]}, "events"),
    ({"events": []}, "events"),
    ({"events": "order_completed"}, "events"),
    ({"url": None}, "url"),
    ({"secret": ""}, "secret"),
    ({"legacy_secret_header": "sometimes"}, "legacy_secret_header"),
    ({"account_id": "no such account"}, "account_id"),
    ({"account_id": "ghost"}, "account_id"),
])
def test_bad_registrations_are_422(client, headers, accounts, change, field):
    body = {**GOOD, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = client.post("/advanced/webhooks", headers=headers["admin"], json=body)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and field in error["details"]


def test_missing_body_is_4xx(client, headers):
    assert client.post("/advanced/webhooks", headers=headers["primary"], data="{",
                       content_type="application/json").status_code == 400
    assert client.post("/advanced/webhooks", headers=headers["primary"], json={}).status_code == 422


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://localhost/hook",
                                 "http://[::1]/hook", "http://169.254.169.254/latest/meta-data",
                                 "http://192.168.0.10/", "http://[::ffff:127.0.0.1]/x", "http://[::127.0.0.1]/x",
                                 "http://[64:ff9b::7f00:1]/x", "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
                                 "http://[2002:7f00:1::]/x", "http://2130706433/x", "http://0x7f.1/x",
                                 "http://017700000001/x", "http://127.1/x"])
def test_private_addresses_are_refused_unless_allowed(client, headers, accounts, no_private_receivers, url):
    response = client.post("/advanced/webhooks", headers=headers["primary"], json={**GOOD, "url": url})
    assert response.status_code == 422
    assert "url" in response.get_json()["error"]["details"]


def test_another_accounts_key_may_not_register_for_it(client, headers, accounts):
    assert client.post("/advanced/webhooks", headers=headers["other"], json=GOOD).status_code == 403
    assert client.post("/advanced/webhooks", json=GOOD).status_code == 401


def test_a_legacy_webhook_is_shown_as_one(client, headers, accounts):
    created = client.post("/advanced/webhooks", headers=headers["primary"], json={**GOOD, "legacy_secret_header": True})
    assert created.status_code == 201 and created.get_json()["legacy_secret_header"] is True
    webhook_id = created.get_json()["webhook_id"]
    try:
        [listed] = [w for w in client.get("/advanced/webhooks", headers=headers["primary"]).get_json()
                    if w["webhook_id"] == webhook_id]
        assert listed["legacy_secret_header"] is True
    finally:
        client.delete(f"/advanced/webhooks/{webhook_id}", headers=headers["primary"])


def test_the_secret_is_never_returned_or_logged(client, headers, accounts, no_private_receivers, caplog):
    """Neither by a registration nor by its refusals (a private address, a bad flag), nor by the list."""
    secret = "never-shown-7f3a9c"
    caplog.set_level(logging.DEBUG)
    bodies = [{**GOOD, "secret": secret, "legacy_secret_header": True},
              {**GOOD, "secret": secret, "url": "http://[::127.0.0.1]/x"},
              {**GOOD, "secret": secret, "url": "http://0x7f.1/x", "legacy_secret_header": "yes please"}]
    answers = [client.post("/advanced/webhooks", headers=headers["primary"], json=body) for body in bodies]
    assert [a.status_code for a in answers] == [201, 422, 422]
    answers.append(client.get("/advanced/webhooks", headers=headers["primary"]))
    answers.append(client.get("/advanced/webhooks", headers=headers["admin"]))
    try:
        for answer in answers:
            assert secret not in answer.get_data(as_text=True)
            assert secret not in json.dumps(dict(answer.headers))
        assert not [r for r in caplog.records if secret in r.getMessage() or secret in json.dumps(
            r.__dict__, default=str)]
    finally:
        client.delete(f"/advanced/webhooks/{answers[0].get_json()['webhook_id']}", headers=headers["primary"])
