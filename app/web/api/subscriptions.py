"""Market-data subscriptions (applied live by the stream process).

Who may see, change and delete which subscription: app.market.subscriptions (a key's refusals are 403).
"""
from contextlib import contextmanager

from marshmallow import Schema, fields, validate

from app.market import subscriptions as subs
from app.market.chain_selection import reference_price, select_chain
from app.market.instruments import registry
from app.web.auth import authenticate, require_account
from app.core.db import session_scope
from app.core.redis_client import get_redis
from app.core.timestamps import iso
from app.core.validation import NUL_FREE
from app.web.blueprint import Blueprint
from app.web.errors import ApiError
from app.web.json_input import LARGER_BODIES

blp = Blueprint("subscriptions", __name__, description="Market-data subscriptions")

MODE = validate.OneOf(subs.MODES + tuple(m.lower() for m in subs.MODES))
# What the accounts can carry is the limit (409 past it); this only bounds one request's work: as many
# tokens as Kite's whole instrument dump, ~10 bytes of JSON each.
BULK_MAX_TOKENS = 100_000
LARGER_BODIES["subscriptions.subscribe_many"] = BULK_MAX_TOKENS * 12


TOKEN_RANGE = (1, 2**40)


class TokenList(fields.List):
    """A list of instrument tokens, checked in one pass when every one is fine: marshmallow's field per
    item costs tens of microseconds a token, most of a 27,000-token request. Anything else goes through
    the per-item field, for its per-item messages."""

    def __init__(self, **kwargs) -> None:
        super().__init__(fields.Integer(strict=True, validate=validate.Range(*TOKEN_RANGE)), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        low, high = TOKEN_RANGE
        if isinstance(value, list) and all(type(t) is int and low <= t <= high for t in value):
            return list(value)
        return super()._deserialize(value, attr, data, **kwargs)


class SubscriptionRequestSchema(Schema):
    instrument_token = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**40))
    requested_mode = fields.String(load_default="QUOTE", validate=MODE)
    account_id = fields.String(validate=[validate.Length(min=1, max=64), NUL_FREE])


class BulkSubscriptionSchema(Schema):
    instrument_tokens = TokenList(required=True, validate=validate.Length(min=1, max=BULK_MAX_TOKENS))
    requested_mode = fields.String(load_default="QUOTE", validate=MODE)
    account_id = fields.String(validate=[validate.Length(min=1, max=64), NUL_FREE])


class ChainSubscriptionRequestSchema(Schema):
    underlying = fields.String(required=True, validate=[validate.Length(min=1, max=32), NUL_FREE],
                               metadata={"description": "as the derivatives name it: NIFTY, BANKNIFTY, RELIANCE"})
    expiry = fields.Date(metadata={"description": "one expiry (YYYY-MM-DD); absent: every live expiry"})
    strikes = fields.Integer(strict=True, validate=validate.Range(min=0, max=1000), metadata={
        "description": "strikes on each side of the ATM strike (both CE and PE of each, the ATM's too); "
                       "absent: every strike"})
    requested_mode = fields.String(load_default="QUOTE", validate=MODE)
    account_id = fields.String(validate=[validate.Length(min=1, max=64), NUL_FREE])
    include_underlying = fields.Boolean(load_default=True,
                                        metadata={"description": "also the spot and the live futures"})


class ChainSubscriptionResultSchema(Schema):
    underlying = fields.String()
    expiries = fields.List(fields.String())
    reference_price = fields.Float(allow_none=True, metadata={
        "description": "the underlying's price the ATM was found from (latest tick, else the dump's)"})
    atm_strikes = fields.Dict(keys=fields.String(), values=fields.Float(), metadata={"description": "per expiry"})
    strikes = fields.Integer(metadata={"description": "strike rows subscribed, over every expiry"})
    options = fields.Integer()
    subscribed = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()
    instrument_tokens = fields.List(fields.Integer(), metadata={"description": "spot and futures first"})


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
    """Subscribe many instruments at once (all or nothing), up to everything the streaming accounts can
    carry (Kite: 9,000 per account; 409 past it)."""
    change = _apply(body["instrument_tokens"], body["requested_mode"], body.get("account_id"))
    return {"subscribed": len(set(body["instrument_tokens"])), "created": change.created, "updated": change.updated}


@blp.route("/subscriptions/chain", methods=["POST"])
@blp.arguments(ChainSubscriptionRequestSchema)
@blp.response(200, ChainSubscriptionResultSchema)
@blp.errors(403, 404, 409)
def subscribe_chain(body):
    """Subscribe an underlying's option chain in one call: one expiry or every live one, every strike or
    the N on each side of the ATM, with the spot and futures unless `include_underlying` is false. All or
    nothing, with the rules of /subscriptions/bulk; 404 for an underlying without live options or an
    expiry it does not have."""
    found = registry().underlying(body["underlying"].upper())
    with session_scope() as session:
        price = reference_price(found, get_redis(), session) if found.options else None
    chosen = select_chain(found, body.get("expiry"), body.get("strikes"), body["include_underlying"], price)
    tokens = chosen.tokens
    change = _apply(tokens, body["requested_mode"], body.get("account_id"))
    return {"underlying": chosen.underlying, "expiries": [e.isoformat() for e in chosen.expiries],
            "reference_price": chosen.reference_price,
            "atm_strikes": {e.isoformat(): k for e, k in chosen.atm_strikes.items()},
            "strikes": chosen.strikes, "options": len(chosen.options), "subscribed": len(tokens),
            "created": change.created, "updated": change.updated, "instrument_tokens": tokens}


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
