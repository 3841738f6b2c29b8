"""The webhook registry: register, list, delete webhooks and read their delivery log."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.core.crypto import encrypt
from app.models import Account, Webhook, WebhookDelivery
from app.core.timestamps import iso
from app.webhooks import account_webhooks as subscriptions
from app.webhooks.url_safety import UnsafeUrl, check_registration

ORDER_EVENTS = ("order_placed", "order_completed", "order_failed", "order_cancelled", "order_rejected")
BATCH_EVENTS = ("batch_completed", "batch_rolled_back")
# account.session_expired: the account's Kite session died, someone must log in; account.kill_switch: a kill
# switch started on the account, or ended (done: flat at the broker; failed: why). Either way it is halted.
ACCOUNT_EVENTS = ("account.session_expired", "account.kill_switch")
EVENTS = ORDER_EVENTS + BATCH_EVENTS + ACCOUNT_EVENTS


class InvalidWebhook(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class WebhookNotFound(LookupError):
    pass


class DeliveryNotFound(LookupError):
    pass


def create_webhook(session: Session, account_id: str, url: str, events: list[str], secret: str,
                   allow_private: bool, legacy_secret_header: bool = False) -> Webhook:
    try:
        check_registration(url, allow_private)
    except UnsafeUrl as exc:
        raise InvalidWebhook("url", str(exc)) from None
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise InvalidWebhook("events", f"unknown events {unknown}; known: {list(EVENTS)}")
    if not events:
        raise InvalidWebhook("events", "subscribe to at least one event")
    if session.get(Account, account_id) is None:
        raise InvalidWebhook("account_id", f"account {account_id!r} is not registered")
    webhook = Webhook(account_id=account_id, url=url.strip(), events=sorted(set(events), key=EVENTS.index),
                      secret_enc=encrypt(secret), legacy_secret_header=legacy_secret_header, active=True)
    session.add(webhook)
    session.flush()
    subscriptions.changed(session, account_id)
    return webhook


def list_webhooks(session: Session, account_ids: set[str] | None) -> list[Webhook]:
    """Active webhooks of the given accounts (None: every account)."""
    query = select(Webhook).where(Webhook.active.is_(True)).order_by(Webhook.created_at)
    if account_ids is not None:
        query = query.where(Webhook.account_id.in_(sorted(account_ids)))
    return list(session.scalars(query))


def get_webhook(session: Session, webhook_id: str) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise WebhookNotFound(webhook_id)
    return webhook


def deactivate_webhook(session: Session, webhook_id: str) -> Webhook:
    """Deleting keeps the row (its delivery log stays readable) but stops all deliveries."""
    webhook = get_webhook(session, webhook_id)
    if not webhook.active:
        raise WebhookNotFound(webhook_id)
    webhook.active = False
    subscriptions.changed(session, webhook.account_id)
    return webhook


def subscribed_webhooks(account_id: str, event: str) -> list[subscriptions.Subscription]:
    """The account's active webhooks for `event` (cached per process; see subscriptions.py)."""
    return [w for w in subscriptions.active(account_id) if event in w.events]


def deliveries_of(session: Session, webhook_id: str, limit: int = 100) -> list[WebhookDelivery]:
    query = (select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
             .options(selectinload(WebhookDelivery.attempt_log))
             .order_by(WebhookDelivery.created_at.desc()).limit(limit))
    return list(session.scalars(query))


def get_delivery(session: Session, delivery_id: str) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise DeliveryNotFound(delivery_id)
    return delivery


def webhook_view(webhook: Webhook) -> dict:
    """What may be shown of a webhook: everything but its secret."""
    return {"webhook_id": webhook.id, "account_id": webhook.account_id, "url": webhook.url,
            "events": list(webhook.events or []), "legacy_secret_header": bool(webhook.legacy_secret_header),
            "active": webhook.active, "created_at": iso(webhook.created_at)}


def delivery_view(delivery: WebhookDelivery) -> dict:
    return {
        "delivery_id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "delivered_at": iso(delivery.delivered_at),
        "payload": delivery.payload,
        "attempt_log": [{"attempt": a.attempt, "at": iso(a.at), "status_code": a.status_code,
                         "error": a.error, "duration_ms": round(a.duration_ms or 0.0, 3)}
                        for a in delivery.attempt_log],
    }
