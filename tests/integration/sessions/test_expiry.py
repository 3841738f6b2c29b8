"""A Kite session that dies, against the paper broker with a real worker: the next order is a 409 with
the login URL, a queued order is held (never dead-lettered) and goes out after the login; the state
shows in /accounts, /health, /metrics, on the order stream and as a webhook."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from kiteconnect import KiteConnect

from tests.integration.sessions.conftest import ADMIN, log_in
from tests.support.orders import market_order
from tests.support.waiting import wait_for
from tests.support.webhooks import Receiver
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def option(instruments):
    rows = [i for i in instruments.all() if i.segment == "NFO-OPT" and i.instrument_type == "CE"]
    return sorted(rows, key=lambda i: i.strike)[len(rows) // 2]


@pytest.fixture()
def receiver():
    server = Receiver(free_port()).start()
    yield server
    server.stop()


def log_out_at_the_broker(paper_broker, account) -> None:
    """End the account's session at the broker behind the service's back (as 06:00 IST does)."""
    KiteConnect(account.api_key, access_token=account.access_token, root=paper_broker.root).invalidate_access_token()


def place(client, account_id, body):
    return client.post(f"/accounts/{account_id}/orders", json=body, headers=ADMIN)


def order(client, order_id):
    return client.get(f"/orders/{order_id}", headers=ADMIN).get_json()


def session_of(client, account_id):
    return client.get(f"/accounts/{account_id}", headers=ADMIN).get_json()["session"]


def test_a_dead_session_holds_queued_orders_refuses_new_ones_and_login_sends_them(
        client, live_server, paper_broker, celery_worker, option, session_account, receiver, test_env):
    account_id = session_account.id
    hook = client.post("/advanced/webhooks", headers=ADMIN, json={
        "url": receiver.url, "account_id": account_id, "events": ["account.session_expired"], "secret": "s3cret-hook"})
    assert hook.status_code == 201, hook.get_json()
    updates = redis.Redis.from_url(test_env.redis_url).pubsub(ignore_subscribe_messages=True)
    updates.subscribe(f"orders:{account_id}")

    log_out_at_the_broker(paper_broker, session_account)
    # The service does not know yet: the order is accepted, the worker meets the TokenException.
    accepted = place(client, account_id, market_order(option))
    assert accepted.status_code == 202, accepted.get_json()
    held = wait_for(lambda: (lambda o: o if o["error"] and "held" in o["error"] else None)(
        order(client, accepted.get_json()["id"])), 20, what="the order held")
    assert held["status"] == "QUEUED" and held["attempts"] == 0
    session = session_of(client, account_id)
    assert session["state"] == "expired" and session["expired_at"] and session["reason"].startswith("order:")

    # New orders are refused at intake, with where to log in.
    refused = place(client, account_id, market_order(option))
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "session_expired"
    assert error["details"]["login_url"] == f"http://localhost/accounts/{account_id}/login"
    assert error["details"]["session"]["state"] == "expired"

    # Seen everywhere: /health, /metrics, the order stream, the webhook.
    health = client.get("/health", headers=ADMIN).get_json()
    assert health["sessions"][account_id]["state"] == "expired"
    assert "sessions" not in client.get("/health").get_json()  # the open endpoint names no session
    assert "session expired" in health["checks"]["broker"]["error"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'kite_session_state{{account_id="{account_id}",state="expired"}} 1.0' in metrics
    messages = []
    wait_for(lambda: messages.extend(m for m in iter(lambda: updates.get_message(timeout=0.2), None))
             or any(json.loads(m["data"])["type"] == "session" for m in messages), 10, what="a session message")
    session_message = next(json.loads(m["data"]) for m in messages if json.loads(m["data"])["type"] == "session")
    assert session_message["data"]["state"] == "expired" and session_message["account_id"] == account_id
    delivery = wait_for(lambda: receiver.requests[0] if receiver.requests else None, 20, what="the webhook")
    assert delivery.json["event"] == "account.session_expired"
    assert delivery.json["data"]["state"] == "expired" and delivery.json["data"]["login_url"]

    # Still held a while later: not retried into the dead-letter queue.
    still = order(client, held["id"])
    assert still["status"] == "QUEUED" and still["attempts"] == 0

    page = log_in(live_server, account_id)
    assert page.status_code == 200 and "1 order(s) held" in page.text
    sent = wait_for(lambda: (lambda o: o if o["status"] in ("OPEN", "COMPLETE") else None)(
        order(client, held["id"])), 20, what="the held order placed after login")
    assert sent["error"] is None
    assert [o["tag"] for o in paper_broker.orders(session_account.api_key)].count(sent["tag"]) == 1
    assert session_of(client, account_id)["state"] == "active"
    assert place(client, account_id, market_order(option)).status_code == 202
    assert len(receiver.requests) == 1  # one expiry, one event
    updates.close()


def test_a_session_past_its_06_00_ist_is_expired_before_any_broker_call(client, session_account, option):
    from app.core.db import session_scope
    from app.kite_session.state import sweep_passed_expiries
    from app.models import Account, utcnow

    with session_scope() as session:
        account = session.get(Account, session_account.id)
        account.session_expires_at = utcnow() - timedelta(minutes=1)
        passed_at = account.session_expires_at
    view = session_of(client, session_account.id)
    assert view["state"] == "expired" and view["expires_at"] is None
    assert view["expired_at"] == passed_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    refused = place(client, session_account.id, market_order(option))
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "session_expired"
    batch = client.post(f"/accounts/{session_account.id}/batch-orders", headers=ADMIN,
                        json={"legs": [market_order(option)]})
    assert batch.status_code == 409 and batch.get_json()["error"]["code"] == "session_expired"

    assert sweep_passed_expiries() == [session_account.id]  # the beat records it (webhook, alert)
    assert sweep_passed_expiries() == []  # once
    assert session_of(client, session_account.id)["reason"].startswith("clock:")


def test_a_held_order_whose_ttl_lapses_is_cancelled_unsent(client, paper_broker, celery_worker, option,
                                                           session_account):
    from app.core.db import session_scope
    from app.kite_session.held_orders import cancel_lapsed
    from app.models import Order

    log_out_at_the_broker(paper_broker, session_account)
    accepted = place(client, session_account.id, market_order(
        option, order_type="LIMIT", price=1.0, validity="TTL", validity_ttl=1))
    assert accepted.status_code == 202, accepted.get_json()
    order_id = accepted.get_json()["id"]
    wait_for(lambda: (order(client, order_id)["error"] or "").startswith("the Kite session"), 20, what="held")
    with session_scope() as session:
        row = session.get(Order, order_id)
        row.accepted_at = row.accepted_at - timedelta(minutes=2)
    assert cancel_lapsed() == 1
    lapsed = order(client, order_id)
    assert lapsed["status"] == "CANCELLED" and "expired (validity TTL) while held" in lapsed["error"]
    assert not [o for o in paper_broker.orders(session_account.api_key) if o["tag"] == lapsed["tag"]]


def test_a_token_replaced_by_a_newer_login_does_not_expire_the_session(session_account):
    from app.kite_session.state import account_session, mark_expired

    assert not mark_expired(session_account.id, "old token refused", "test", access_token="an-older-token")
    assert account_session(session_account.id)["state"] == "active"
    assert mark_expired(session_account.id, "refused", "test", access_token=session_account.access_token)
    assert not mark_expired(session_account.id, "refused again", "test")  # announced once


@pytest.fixture()
def every_session_restored_afterwards(paper_broker):
    """`expire_sessions` ends every session of the shared test broker: afterwards every account of the
    other tests gets its token back at the broker and, if this test's expiry reached the service, a live
    session there again."""
    from app.models import utcnow

    started = utcnow()
    yield
    from sqlalchemy import select

    from app import accounts as account_service
    from app.core.db import session_scope
    from app.kite_session.announce import session_started
    from app.kite_session.state import EXPIRED, session_view, start_session
    from app.models import Account

    restarted = {}
    with session_scope() as session:
        for account in session.scalars(select(Account).where(Account.access_token_enc.is_not(None))):
            paper_broker.add_account(account.api_key, access_token=account_service.credentials(account).access_token)
            if account.session_status == EXPIRED and account.session_expired_at >= started:
                start_session(account)
                restarted[account.id] = account
        views = {account_id: session_view(account) for account_id, account in restarted.items()}
    for account_id, view in views.items():
        session_started(account_id, view)


def test_kite_s_06_00_expiry_of_every_session_then_a_login(client, live_server, paper_broker, celery_worker, option,
                                                          session_account, every_session_restored_afterwards):
    paper_broker.settings(expire_sessions=True)  # what 06:00 IST does to every token at once
    accepted = place(client, session_account.id, market_order(option))
    assert accepted.status_code == 202
    held = wait_for(lambda: (lambda o: o if o["error"] and "held" in o["error"] else None)(
        order(client, accepted.get_json()["id"])), 20, what="the order held")
    refused = place(client, session_account.id, market_order(option))
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "session_expired"
    assert log_in(live_server, session_account.id).status_code == 200
    sent = wait_for(lambda: (lambda o: o if o["status"] in ("OPEN", "COMPLETE") else None)(
        order(client, held["id"])), 20, what="the held order placed after login")
    assert [o["tag"] for o in paper_broker.orders(session_account.api_key)].count(sent["tag"]) == 1
