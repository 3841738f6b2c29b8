"""Another account's delivery id is answered exactly as an unknown one (issue #21): its 404 used to
name the delivery's webhook id."""
from __future__ import annotations

from app.core.db import session_scope
from app.models import WebhookDelivery


def test_redelivering_another_accounts_delivery_says_no_more_than_an_unknown_id(client, headers, accounts, register):
    webhook = register("http://127.0.0.1:9/hook", ["order_cancelled"])  # primary's
    with session_scope() as session:
        delivery = WebhookDelivery(webhook_id=webhook["webhook_id"], event="order_cancelled", payload={},
                                   status="FAILED", attempts=1)
        session.add(delivery)
        session.flush()
        delivery_id = delivery.id
    unknown_id = "0" * len(delivery_id)

    theirs = client.post(f"/advanced/webhooks/deliveries/{delivery_id}/redeliver", headers=headers["other"])
    unknown = client.post(f"/advanced/webhooks/deliveries/{unknown_id}/redeliver", headers=headers["other"])
    assert theirs.status_code == unknown.status_code == 404
    assert webhook["webhook_id"] not in theirs.get_data(as_text=True)
    assert theirs.get_json()["error"] == {**unknown.get_json()["error"],
                                          "message": unknown.get_json()["error"]["message"].replace(unknown_id,
                                                                                                    delivery_id)}
    with session_scope() as session:
        assert session.get(WebhookDelivery, delivery_id).status == "FAILED"  # nothing was started
