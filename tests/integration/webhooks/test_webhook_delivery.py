"""Signed delivery with retries, FAILED deliveries kept and redelivered, de-duplication."""
from __future__ import annotations

import dataclasses
import json
import time

from app.webhooks import events as webhook_events
from app.webhooks import delivery
from app.webhooks.settings import webhook_settings
from app.webhooks.signing import signature
from tests.support.ports import free_port
from tests.support.realtime import new_order, transition
from tests.support.waiting import wait_for

SECRET = "s3cret-for-tests"


def deliveries(client, headers, webhook_id, role="primary"):
    response = client.get(f"/advanced/webhooks/{webhook_id}/deliveries", headers=headers[role])
    assert response.status_code == 200
    return response.get_json()["deliveries"]


def test_signed_delivery_after_two_failed_attempts(client, headers, celery_worker, receiver, register):
    hook = receiver(fail_first=2)
    webhook = register(hook.url, ["order_completed"])
    order = new_order("primary", "OPEN")
    transition(order.id, "COMPLETE", filled_quantity=50)

    log = wait_for(lambda: deliveries(client, headers, webhook["webhook_id"]), 20.0, 0.1, what="a DELIVERED delivery",
                   until=lambda ds: ds and ds[0]["status"] == "DELIVERED")
    assert len(log) == 1
    record = log[0]
    assert record["event"] == "order_completed" and record["attempts"] == 3
    assert [a["status_code"] for a in record["attempt_log"]] == [500, 500, 200]
    assert [a["attempt"] for a in record["attempt_log"]] == [1, 2, 3]
    assert record["attempt_log"][0]["error"].startswith("HTTP 500")
    assert record["delivered_at"] and record["last_status_code"] == 200

    sent = hook.for_order(order.id)
    assert len(sent) == 3
    for request in sent:
        headers_in = request.headers
        assert headers_in["X-Webhook-Id"] == record["delivery_id"]  # stable across retries
        assert headers_in["X-Webhook-Signature"] == signature(SECRET, headers_in["X-Webhook-Timestamp"], request.body)
        assert abs(int(headers_in["X-Webhook-Timestamp"]) - time.time()) < 60
        assert "X-Webhook-Secret" not in headers_in  # signed only: the secret never travels
        assert SECRET not in json.dumps(headers_in) and SECRET.encode() not in request.body
        assert headers_in["Content-Type"] == "application/json"
    body = sent[-1].json
    assert set(body) == {"event", "account_id", "data", "timestamp"}
    assert (body["event"], body["account_id"]) == ("order_completed", "primary")
    assert body["data"]["status"] == "COMPLETE" and body["data"]["filled_quantity"] == 50
    assert body["timestamp"].endswith("Z")
    # A tampered body does not verify.
    assert signature(SECRET, sent[-1].headers["X-Webhook-Timestamp"], sent[-1].body + b" ") != \
        sent[-1].headers["X-Webhook-Signature"]


def test_a_legacy_webhook_also_gets_the_secret_header(client, headers, celery_worker, receiver, register):
    """For receivers written for the old ticker service, which compare X-Webhook-Secret."""
    hook = receiver()
    webhook = register(hook.url, ["order_completed"], legacy_secret_header=True)
    assert webhook["legacy_secret_header"] is True
    order = new_order("primary", "OPEN")
    transition(order.id, "COMPLETE", filled_quantity=50)
    [sent] = wait_for(lambda: hook.for_order(order.id), 20.0, 0.1, what="the legacy delivery")
    assert sent.headers["X-Webhook-Secret"] == SECRET
    assert sent.headers["X-Webhook-Signature"] == signature(SECRET, sent.headers["X-Webhook-Timestamp"], sent.body)


def test_receiver_always_down_ends_failed_then_redeliver_works(client, headers, celery_worker, receiver, register):
    port = free_port()  # nothing listens here yet
    webhook = register(f"http://127.0.0.1:{port}/hook", ["order_cancelled"])
    order = new_order("primary", "OPEN")
    transition(order.id, "CANCELLED")

    failed = wait_for(lambda: deliveries(client, headers, webhook["webhook_id"]), 20.0, 0.1, what="a FAILED delivery",
                      until=lambda ds: ds and ds[0]["status"] == "FAILED")[0]
    max_attempts = int(webhook_settings().max_attempts)
    assert failed["attempts"] == max_attempts
    assert len(failed["attempt_log"]) == max_attempts
    assert all(a["status_code"] is None and "ConnectionError" in a["error"] for a in failed["attempt_log"])
    assert failed["last_error"] and failed["delivered_at"] is None

    hook = receiver(port=port)  # the receiver is back
    response = client.post(f"/advanced/webhooks/deliveries/{failed['delivery_id']}/redeliver", headers=headers["primary"])
    assert response.status_code == 202 and response.get_json()["status"] == "PENDING"
    done = wait_for(lambda: deliveries(client, headers, webhook["webhook_id"]), 20.0, 0.1,
                    what="the redelivery DELIVERED", until=lambda ds: ds[0]["status"] == "DELIVERED")[0]
    assert done["attempts"] == max_attempts + 1
    assert done["attempt_log"][-1]["status_code"] == 200
    assert [r.headers["X-Webhook-Id"] for r in hook.for_order(order.id)] == [failed["delivery_id"]]

    # Redelivering a delivered one is allowed (a new round), an unknown id is 404, another account's 404.
    assert client.post("/advanced/webhooks/deliveries/nope/redeliver", headers=headers["primary"]).status_code == 404
    assert client.post(f"/advanced/webhooks/deliveries/{failed['delivery_id']}/redeliver",
                       headers=headers["other"]).status_code == 404


def test_each_order_event_fires_once(client, headers, celery_worker, receiver, register):
    hook = receiver()
    webhook = register(hook.url, ["order_placed", "order_completed"])
    order = new_order("primary", "QUEUED")
    transition(order.id, "OPEN")
    transition(order.id, "OPEN", filled_quantity=10)  # a repeated report of the same status
    transition(order.id, "COMPLETE", filled_quantity=50)
    transition(order.id, "COMPLETE", filled_quantity=50)  # postback and poll both saw it

    wait_for(lambda: hook.for_order(order.id), 20.0, 0.1, what="two events delivered", until=lambda got: len(got) >= 2)
    time.sleep(0.5)  # a duplicate would be sent by now
    events = sorted(r.json["event"] for r in hook.for_order(order.id))
    assert events == ["order_completed", "order_placed"]
    assert len(deliveries(client, headers, webhook["webhook_id"])) == 2


def test_unsubscribed_events_and_other_accounts_create_nothing(client, headers, register):
    webhook = register("http://127.0.0.1:9/hook", ["order_rejected"])
    order = new_order("primary", "OPEN")
    assert webhook_events.order_changed("primary", {"order_id": order.id, "status": "COMPLETE"}) == []
    assert webhook_events.order_changed("other", {"order_id": order.id, "status": "REJECTED"}) == []
    assert deliveries(client, headers, webhook["webhook_id"]) == []


def test_a_process_that_cached_the_accounts_webhooks_sees_registration_and_deletion(client, headers, register):
    """Each process caches an account's webhooks; a change replaces the account's token in Redis."""
    from app.webhooks import account_webhooks as subscriptions

    cancelled = {"status": "CANCELLED"}
    assert webhook_events.order_changed("primary", {"order_id": new_order("primary").id, **cancelled}) == []
    assert "primary" in subscriptions._cache  # the lookup above is cached now
    webhook = register("http://127.0.0.1:9/hook", ["order_cancelled"])
    assert len(webhook_events.order_changed("primary", {"order_id": new_order("primary").id, **cancelled})) == 1
    assert client.delete(f"/advanced/webhooks/{webhook['webhook_id']}", headers=headers["primary"]).status_code == 204
    assert webhook_events.order_changed("primary", {"order_id": new_order("primary").id, **cancelled}) == []


def test_batch_events(client, headers, celery_worker, receiver, register):
    hook = receiver()
    register(hook.url, ["batch_rolled_back"])
    ids = webhook_events.batch_event("primary", "batch_rolled_back", {"batch_id": "b-test-1", "status": "ROLLED_BACK"})
    assert len(ids) == 1
    assert webhook_events.batch_event("primary", "batch_rolled_back", {"batch_id": "b-test-1"}) == []
    assert webhook_events.batch_event("primary", "order_completed", {"batch_id": "b-test-1"}) == []  # not a batch event
    got = wait_for(lambda: [r for r in hook.requests if r.json["data"].get("batch_id") == "b-test-1"], 20.0, 0.1,
                   what="the batch event delivered")
    assert got[0].json["event"] == "batch_rolled_back"


def test_order_changed_never_raises(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(webhook_events, "_emit", broken)
    assert webhook_events.order_changed("primary", {"order_id": "x", "status": "COMPLETE"}) == []


def test_private_address_is_refused_at_delivery_time(client, headers, receiver, register):
    """Registered while private receivers were allowed; delivery with them disallowed fails without sending."""
    hook = receiver()
    webhook = register(hook.url, ["order_completed"])
    order = new_order("primary", "OPEN")
    from app.core.db import session_scope

    with session_scope() as session:
        [delivery_id] = delivery.create_deliveries(session, "primary", "order_completed",
                                                   {"order_id": order.id, "status": "COMPLETE"})
    strict = dataclasses.replace(webhook_settings(), allow_private=False)
    result = delivery.attempt(delivery_id, settings=strict)
    assert result.status == "FAILED" and "non-public address" in result.error
    assert hook.requests == []
    [record] = deliveries(client, headers, webhook["webhook_id"])
    assert record["status"] == "FAILED" and record["attempts"] == 1
    assert "refused before sending" in record["attempt_log"][0]["error"]
    assert json.dumps(record)  # the log is plain JSON


def test_stranded_pending_delivery_is_requeued_by_beat(client, headers, celery_worker, receiver, register):
    """A delivery whose task never reached the queue (Redis down when the event fired) is not lost."""
    from datetime import timedelta

    from app.core.db import session_scope
    from app.models import WebhookDelivery, utcnow
    from workers.tasks.webhooks import requeue_stranded_deliveries

    hook = receiver(fail_first=0)
    webhook = register(hook.url, ["order_completed"])
    with session_scope() as session:  # as if the enqueue after the event had failed an hour ago
        ids = delivery.create_deliveries(session, "primary", "order_completed", {"order_id": "stranded-1"})
        for row in session.query(WebhookDelivery).filter(WebhookDelivery.id.in_(ids)):
            row.created_at = utcnow() - timedelta(hours=1)
    assert requeue_stranded_deliveries.run() >= 1
    log = wait_for(lambda: deliveries(client, headers, webhook["webhook_id"]), 20.0, 0.1,
                   what="the stranded delivery DELIVERED",
                   until=lambda ds: any(d["status"] == "DELIVERED" and d["delivery_id"] in ids for d in ds))
    assert any(d["delivery_id"] in ids for d in log)
