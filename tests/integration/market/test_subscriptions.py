"""Subscriptions: validated against the registry, stored, announced to the stream, capacity-checked."""
import json
import time

from app.core.redis_client import get_redis


def _nifty_tokens(instruments, n):
    options = [i for i in instruments.all() if i.name == "NIFTY" and i.is_option]
    return [o.instrument_token for o in options[:n]]


def test_subscribe_list_delete_and_stream_is_told(client, headers, clean_subscriptions, instruments):
    token = _nifty_tokens(instruments, 1)[0]
    pubsub = get_redis().pubsub()
    pubsub.subscribe("stream:control")
    pubsub.get_message(timeout=1)  # subscribe confirmation

    # Pinned to the key's account: its keys may re-mode and delete it (a shared one is admin's to
    # lower or delete: test_subscription_isolation.py).
    created = client.post("/subscriptions", headers=headers["primary"],
                          json={"instrument_token": token, "requested_mode": "FULL", "account_id": "primary"})
    assert created.status_code == 201, created.json
    assert created.json["requested_mode"] == "FULL" and created.json["tradingsymbol"]
    deadline, note = time.monotonic() + 5, None
    while note is None and time.monotonic() < deadline:
        note = pubsub.get_message(timeout=0.5)
    assert note and json.loads(note["data"]) == {"op": "subscriptions_changed"}

    again = client.post("/subscriptions", headers=headers["primary"],
                        json={"instrument_token": token, "requested_mode": "ltp", "account_id": "primary"})
    assert again.status_code == 200 and again.json["requested_mode"] == "LTP"
    listed = client.get("/subscriptions", headers=headers["primary"]).json
    assert [s["instrument_token"] for s in listed] == [token]
    assert client.delete(f"/subscriptions/{token}", headers=headers["primary"]).status_code == 204
    assert client.delete(f"/subscriptions/{token}", headers=headers["primary"]).status_code == 404
    pubsub.close()


def test_unknown_token_and_bad_mode_are_422(client, headers, clean_subscriptions):
    response = client.post("/subscriptions", headers=headers["primary"], json={"instrument_token": 999999999})
    assert response.status_code == 422 and "instrument_token" in response.json["error"]["details"]
    response = client.post("/subscriptions", headers=headers["primary"],
                           json={"instrument_token": 256265, "requested_mode": "TURBO"})
    assert response.status_code == 422 and "requested_mode" in response.json["error"]["details"]
    response = client.post("/subscriptions", headers=headers["primary"], json={"instrument_token": "abc"})
    assert response.status_code == 422


def test_over_capacity_is_409_and_nothing_is_stored(client, headers, clean_subscriptions, instruments,
                                                  settings_override):
    from sqlalchemy import func, select

    from app.core.db import session_scope
    from app.models import Account

    # Every streaming account (active, with a token) × 1 connection × 2 instruments.
    settings_override(max_ws_connections=1, max_instruments_per_ws=2)
    with session_scope() as session:
        streaming = session.scalar(select(func.count()).select_from(Account).where(
            Account.active.is_(True), Account.access_token_enc.is_not(None)))
    capacity = 2 * streaming
    tokens = _nifty_tokens(instruments, capacity + 2)
    assert len(tokens) == capacity + 2
    ok = client.post("/subscriptions/bulk", headers=headers["admin"],
                     json={"instrument_tokens": tokens[:capacity], "requested_mode": "QUOTE"})
    assert ok.status_code == 200 and ok.json["created"] == capacity
    refused = client.post("/subscriptions", headers=headers["admin"], json={"instrument_token": tokens[capacity]})
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "over_capacity"
    assert refused.json["error"]["details"] == {"requested": capacity + 1, "capacity": capacity}
    # Pinned to one account: 2 more fit the total? No — and the account alone carries only 2.
    pinned = client.post("/subscriptions/bulk", headers=headers["admin"],
                         json={"instrument_tokens": tokens[capacity:], "account_id": "primary"})
    assert pinned.status_code == 409
    assert len(client.get("/subscriptions", headers=headers["admin"]).json) == capacity


def test_pinning_to_another_account_is_403(client, headers, clean_subscriptions, instruments):
    token = _nifty_tokens(instruments, 1)[0]
    response = client.post("/subscriptions", headers=headers["primary"],
                           json={"instrument_token": token, "account_id": "other"})
    assert response.status_code == 403
