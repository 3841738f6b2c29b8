"""Subscriptions across accounts (issue #21): a key scoped to `primary` may not re-pin, re-mode, delete
or list another account's subscriptions, nor lower, pin or delete a shared one; it may still create
shared ones and raise their mode (what the dashboard does), and admin keys may do everything."""
import pytest

from tests.integration.market.test_subscriptions import _nifty_tokens


def stored(token):
    from app.core.db import session_scope
    from app.models import Subscription

    with session_scope() as session:
        sub = session.get(Subscription, token)
        return None if sub is None else (sub.requested_mode, sub.account_id)


@pytest.fixture()
def tokens(instruments, clean_subscriptions):
    return _nifty_tokens(instruments, 4)


def _pin(client, headers, token, account_id, mode="QUOTE"):
    pin = {"account_id": account_id} if account_id else {}
    response = client.post("/subscriptions", headers=headers["admin"],
                           json={"instrument_token": token, "requested_mode": mode, **pin})
    assert response.status_code == 201, response.json


def test_another_accounts_subscription_cannot_be_repinned_remoded_or_deleted(client, headers, tokens):
    pinned, fresh = tokens[:2]
    _pin(client, headers, pinned, "other")

    # The probe of the issue: this answered 200 and set account_id to null, then the DELETE was 204.
    for body in ({"instrument_token": pinned, "requested_mode": "LTP"},
                 {"instrument_token": pinned, "requested_mode": "QUOTE", "account_id": "primary"}):
        refused = client.post("/subscriptions", headers=headers["primary"], json=body)
        assert refused.status_code == 403, refused.json
        assert "other" not in refused.json["error"]["message"]
    bulk = client.post("/subscriptions/bulk", headers=headers["primary"],
                       json={"instrument_tokens": [fresh, pinned], "requested_mode": "FULL"})
    assert bulk.status_code == 403
    assert stored(fresh) is None  # all or nothing
    deleted = client.delete(f"/subscriptions/{pinned}", headers=headers["primary"])
    assert deleted.status_code == 403 and "other" not in deleted.json["error"]["message"]
    assert stored(pinned) == ("QUOTE", "other")

    # The account's own keys and admin keys still may.
    assert client.post("/subscriptions", headers=headers["other"],
                       json={"instrument_token": pinned, "requested_mode": "FULL", "account_id": "other"}
                       ).status_code == 200
    assert stored(pinned) == ("FULL", "other")
    assert client.delete(f"/subscriptions/{pinned}", headers=headers["admin"]).status_code == 204


def test_a_key_lists_its_accounts_and_the_shared_subscriptions(client, headers, tokens):
    of_other, of_primary, shared = tokens[:3]
    _pin(client, headers, of_other, "other")
    _pin(client, headers, of_primary, "primary")
    _pin(client, headers, shared, None)

    def listed(role):
        response = client.get("/subscriptions", headers=headers[role])
        assert response.status_code == 200
        return {s["instrument_token"]: s["account_id"] for s in response.json}

    assert listed("primary") == {of_primary: "primary", shared: None}
    assert listed("other") == {of_other: "other", shared: None}
    assert listed("admin") == {of_other: "other", of_primary: "primary", shared: None}


def test_shared_subscriptions_any_key_adds_and_raises_only_admin_lowers_pins_or_deletes(client, headers, tokens):
    shared, other_shared = tokens[:2]
    # The dashboard subscribes the chain on display, unpinned, in FULL mode, with the trader's key.
    created = client.post("/subscriptions/bulk", headers=headers["primary"],
                          json={"instrument_tokens": [shared], "requested_mode": "QUOTE"})
    assert created.status_code == 200 and created.json["created"] == 1
    raised = client.post("/subscriptions/bulk", headers=headers["other"],
                         json={"instrument_tokens": [shared], "requested_mode": "FULL"})
    assert raised.status_code == 200 and raised.json["updated"] == 1
    again = client.post("/subscriptions/bulk", headers=headers["primary"],
                        json={"instrument_tokens": [shared], "requested_mode": "FULL"})
    assert again.status_code == 200 and (again.json["created"], again.json["updated"]) == (0, 0)
    assert stored(shared) == ("FULL", None)

    # Lowering it, taking it over or deleting it would take data away from the other accounts' users.
    for body in ({"instrument_token": shared, "requested_mode": "LTP"},
                 {"instrument_token": shared, "requested_mode": "FULL", "account_id": "primary"}):
        assert client.post("/subscriptions", headers=headers["primary"], json=body).status_code == 403
    assert client.delete(f"/subscriptions/{shared}", headers=headers["primary"]).status_code == 403
    assert stored(shared) == ("FULL", None)

    _pin(client, headers, other_shared, None, mode="FULL")
    assert client.post("/subscriptions", headers=headers["admin"],
                       json={"instrument_token": other_shared, "requested_mode": "LTP"}).status_code == 200
    assert client.delete(f"/subscriptions/{shared}", headers=headers["admin"]).status_code == 204
