"""Market-data subscriptions (applied live by the stream process).

Who may see, change and delete which subscription: app.market.subscriptions (a key's refusals are 403).
"""
from contextlib import contextmanager

from marshmallow import Schema, fields, validate

from app.market import subscriptions as subs
from app.web.auth import authenticate, require_account
from app.core.db import session_scope
from app.core.timestamps import iso
from app.core.validation import NUL_FREE
from app.web.blueprint import Blueprint
from app.web.errors import ApiError

blp = Blueprint("subscriptions", __name__, description="Market-data subscriptions")

MODE = validate.OneOf(subs.MODES + tuple(m.lower() for m in subs.MODES))


class SubscriptionRequestSchema(Schema):
    instrument_token = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**40))
    requested_mode = fields.String(load_default="QUOTE", validate=MODE)
    account_id = fields.String(validate=[validate.Length(min=1, max=64), NUL_FREE])


class BulkSubscriptionSchema(Schema):
    instrument_tokens = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1, max=2**40)),
                                    required=True, validate=validate.Length(min=1, max=9000))
    requested_mode = fields.String(load_default="QUOTE", validate=MODE)
    account_id = fields.String(validate=[validate.Length(min=1, max=64), NUL_FREE])


class SubscriptionSchema(Schema):
    instrument_token = fields.Integer()
    requested_mode = fields.String()
    account_id = fields.String(allow_none=True)
    tradingsymbol = fields.String(allow_none=True)
    created_at = fields.String()


class BulkResultSchema(Schema):
    subscribed = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()


def _view(sub) -> dict:
    from app.market.instruments import registry

    info = registry().by_token(sub.instrument_token)
    return {"instrument_token": sub.instrument_token, "requested_mode": sub.requested_mode,
            "account_id": sub.account_id, "tradingsymbol": info.tradingsymbol if info else None,
            "created_at": iso(sub.created_at)}


def _apply(tokens, mode, account_id):
    caller = require_account(account_id) if account_id else authenticate()
    with session_scope() as session, _refusal_is_403():
        change = subs.subscribe(session, tokens, mode, account_id, caller=caller)
    subs.notify_stream()
    return change


@contextmanager
def _refusal_is_403():
    try:
        yield
    except subs.NotPermitted as exc:
        raise ApiError(403, str(exc)) from None


@blp.route("/subscriptions", methods=["POST"])
@blp.arguments(SubscriptionRequestSchema)
@blp.response(201, SubscriptionSchema)
@blp.alt_response(200, schema=SubscriptionSchema, success=True, description="already subscribed (mode updated)")
@blp.errors(403, 409)
def subscribe(body):
    """Subscribe an instrument (LTP, QUOTE or FULL); 409 beyond what the accounts can carry. 403: another
    account's subscription, or lowering or pinning a shared one without an admin key."""
    change = _apply([body["instrument_token"]], body["requested_mode"], body.get("account_id"))
    with session_scope() as session:
        sub = session.get(subs.Subscription, body["instrument_token"])
        return _view(sub), 201 if change.created else 200


@blp.route("/subscriptions/bulk", methods=["POST"])
@blp.arguments(BulkSubscriptionSchema)
@blp.response(200, BulkResultSchema)
@blp.errors(403, 409)
def subscribe_many(body):
    """Subscribe many instruments at once (all or nothing)."""
    change = _apply(body["instrument_tokens"], body["requested_mode"], body.get("account_id"))
    return {"subscribed": len(set(body["instrument_tokens"])), "created": change.created, "updated": change.updated}


@blp.route("/subscriptions", methods=["GET"])
@blp.response(200, SubscriptionSchema(many=True))
def list_subscriptions():
    """The caller's accounts' subscriptions and the shared ones (every one to an admin key)."""
    caller = authenticate()
    with session_scope() as session:
        return [_view(s) for s in subs.list_subscriptions(session, caller=caller)]


# Bounded as the request schemas bound a token: a larger path id matches no route (404), rather than
# reaching the database, where a number past BIGINT is an error.
@blp.route(f"/subscriptions/<int(min=1, max={2**40}):instrument_token>", methods=["DELETE"])
@blp.response(204)
@blp.errors(403, 404)
def unsubscribe(instrument_token):
    """Unsubscribe an instrument; 403 for another account's subscription, or a shared one without an admin key."""
    caller = authenticate()
    with session_scope() as session, _refusal_is_403():
        found = subs.unsubscribe(session, instrument_token, caller=caller)
    if not found:
        raise ApiError(404, f"instrument {instrument_token} is not subscribed")
    subs.notify_stream()
    return ""
