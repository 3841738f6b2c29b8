"""Webhook registry REST API (the old ticker service's paths, under /advanced, kept for its clients).

A webhook belongs to an account: a key registers, lists and deletes webhooks of
its accounts only; ids it may not see answer 404, so ids reveal nothing.
"""
from __future__ import annotations

from flask import current_app
from marshmallow import Schema, fields, validate

from app.web.auth import authenticate, require_account
from app.core.db import session_scope
from app.core.validation import NUL_FREE
from app.web.blueprint import Blueprint
from app.webhooks import delivery as delivery_service
from app.webhooks import registry

blp = Blueprint("webhooks", __name__, description="Signed webhooks: registry and delivery log")

ACCOUNT_ID = validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$", error="letters, digits, '_', '.', '-' (1-64)")


class WebhookCreateSchema(Schema):
    url = fields.String(required=True, validate=[validate.Length(min=1, max=2048), NUL_FREE])
    account_id = fields.String(required=True, validate=ACCOUNT_ID)
    events = fields.List(fields.String(validate=validate.OneOf(registry.EVENTS)), required=True,
                         validate=validate.Length(min=1, max=len(registry.EVENTS)))
    secret = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256))
    legacy_secret_header = fields.Boolean(load_default=False, metadata={"description": (
        "also send the raw secret in X-Webhook-Secret, for receivers written for the old ticker "
        "service; anyone who sees one such request can forge signed ones. Default false: signed only")})


class WebhookSchema(Schema):
    webhook_id = fields.String()
    account_id = fields.String()
    url = fields.String()
    events = fields.List(fields.String())
    legacy_secret_header = fields.Boolean()
    active = fields.Boolean()
    created_at = fields.String()


class AttemptSchema(Schema):
    attempt = fields.Integer()
    at = fields.String()
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Float()


class DeliverySchema(Schema):
    delivery_id = fields.String()
    webhook_id = fields.String()
    event = fields.String()
    status = fields.String(metadata={"description": "PENDING, DELIVERED or FAILED"})
    attempts = fields.Integer()
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.String()
    delivered_at = fields.String(allow_none=True)
    payload = fields.Dict()
    attempt_log = fields.List(fields.Nested(AttemptSchema))


class DeliveryListSchema(Schema):
    webhook_id = fields.String()
    deliveries = fields.List(fields.Nested(DeliverySchema))


class DeliveryQuerySchema(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


def _visible_webhook(session, webhook_id: str):
    """The webhook if this key may see it; otherwise not found, exactly as for an id that does not exist."""
    webhook = registry.get_webhook(session, webhook_id)
    if not authenticate().may_access(webhook.account_id):
        raise registry.WebhookNotFound(webhook_id)
    return webhook


def _visible_delivery(session, delivery_id: str):
    """The delivery if this key may see its webhook; otherwise not found, in the very words of an
    unknown delivery id (naming its webhook would tell another account's webhook ids)."""
    delivery = registry.get_delivery(session, delivery_id)
    try:
        _visible_webhook(session, delivery.webhook_id)
    except registry.WebhookNotFound:
        raise registry.DeliveryNotFound(delivery_id) from None
    return delivery


@blp.route("/advanced/webhooks", methods=["POST"])
@blp.arguments(WebhookCreateSchema)
@blp.response(201, WebhookSchema)
def create_webhook(body):
    """Register a webhook. The secret signs every delivery; it is stored encrypted, never returned and
    not sent (unless `legacy_secret_header`).

    URLs must be http(s); loopback and private addresses (in any form: IPv4-mapped or NAT64 IPv6,
    numeric IPv4) are refused unless WEBHOOK_ALLOW_PRIVATE. A name is checked when it is resolved,
    at each delivery, and the delivery connects to the address checked.
    """
    require_account(body["account_id"])
    allow_private = current_app.config["SETTINGS"].webhook_allow_private
    with session_scope() as session:
        webhook = registry.create_webhook(session, body["account_id"], body["url"], body["events"],
                                          body["secret"], allow_private, body["legacy_secret_header"])
        return registry.webhook_view(webhook)


@blp.route("/advanced/webhooks", methods=["GET"])
@blp.response(200, WebhookSchema(many=True))
def list_webhooks():
    """Active webhooks of the caller's accounts (every account for an admin key)."""
    principal = authenticate()
    with session_scope() as session:
        hooks = registry.list_webhooks(session, None if principal.is_admin else set(principal.accounts))
        return [registry.webhook_view(w) for w in hooks]


@blp.route("/advanced/webhooks/<webhook_id>", methods=["DELETE"])
@blp.response(204)
@blp.errors(404)
def delete_webhook(webhook_id):
    """Stop a webhook. Its delivery log stays readable."""
    with session_scope() as session:
        registry.deactivate_webhook(session, _visible_webhook(session, webhook_id).id)


@blp.route("/advanced/webhooks/<webhook_id>/deliveries", methods=["GET"])
@blp.arguments(DeliveryQuerySchema, location="query")
@blp.response(200, DeliveryListSchema)
@blp.errors(404)
def list_deliveries(query, webhook_id):
    """The newest deliveries of a webhook, each with its attempts and the attempt log."""
    with session_scope() as session:
        webhook = _visible_webhook(session, webhook_id)
        deliveries = registry.deliveries_of(session, webhook.id, query["limit"])
        return {"webhook_id": webhook.id, "deliveries": [registry.delivery_view(d) for d in deliveries]}


@blp.route("/advanced/webhooks/deliveries/<delivery_id>/redeliver", methods=["POST"])
@blp.response(202, DeliverySchema)
@blp.errors(404, 409)
def redeliver(delivery_id):
    """Deliver again (a new round of attempts), e.g. a FAILED delivery after the receiver is fixed."""
    with session_scope() as session:
        _visible_delivery(session, delivery_id)
    return delivery_service.redeliver(delivery_id)
