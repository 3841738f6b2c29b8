"""Market data: the live option chain, and broker pass-throughs (history, quotes, positions)."""
from __future__ import annotations

from datetime import date, datetime

import requests
from kiteconnect import exceptions as kite_errors
from marshmallow import Schema, fields, validate

from app import accounts as account_service
from app.market import option_chain
from app.web.auth import authenticate, require_account
from app.broker.client import kite_client
from app.core.db import session_scope
from app.market.instruments import registry
from app.core.validation import NUL_FREE
from app.core.redis_client import get_redis
from app.web.blueprint import Blueprint
from app.web.errors import ApiError

blp = Blueprint("market", __name__, description="Option chain and market data")

INTERVALS = ("minute", "3minute", "5minute", "10minute", "15minute", "30minute", "60minute", "day")


class ChainQuerySchema(Schema):
    underlying = fields.String(required=True, validate=validate.Length(min=1, max=32))
    expiry = fields.Date()


class HistoryQuerySchema(Schema):
    instrument_token = fields.Integer(required=True, validate=validate.Range(min=1, max=2**40))
    from_ts = fields.DateTime(required=True)
    to_ts = fields.DateTime(required=True)
    interval = fields.String(load_default="minute", validate=validate.OneOf(INTERVALS))
    oi = fields.Boolean(load_default=False)
    account_id = fields.String(validate=[validate.Length(min=1, max=64), NUL_FREE])


class QuoteQuerySchema(Schema):
    i = fields.List(fields.String(validate=validate.Regexp(r"^[A-Z]{2,6}:\S[^\r\n]{0,63}$")), required=True,
                    validate=validate.Length(min=1, max=500))
    account_id = fields.String(validate=[validate.Length(min=1, max=64), NUL_FREE])


class PositionsQuerySchema(Schema):
    account_id = fields.String(required=True, validate=[validate.Length(min=1, max=64), NUL_FREE])


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _credentials_for(account_id: str | None):
    """The given account (checked against the key), or the first account the key may use."""
    principal = require_account(account_id) if account_id else authenticate()
    with session_scope() as session:
        if account_id:
            return account_service.credentials(account_service.get_account(session, account_id))
        for account in account_service.list_accounts(session):
            if principal.may_access(account.id) and account.access_token_enc:
                return account_service.credentials(account)
    raise ApiError(409, "no account with a broker session is available to this API key", "no_account")


def _broker(call):
    try:
        return _jsonable(call())
    except kite_errors.InputException as exc:
        raise ApiError(422, f"the broker refused the request: {exc}", "broker_rejected")
    except (kite_errors.TokenException, kite_errors.PermissionException) as exc:
        # The account's own state (expired login), not a fault of ours or the broker's: log in again.
        raise ApiError(409, f"the broker refused the account's session (log in again): {exc}", "broker_session")
    except kite_errors.KiteException as exc:
        status = 429 if getattr(exc, "code", 0) == 429 else 502
        raise ApiError(status, f"broker error: {exc}", "broker_error")
    except requests.RequestException as exc:
        raise ApiError(503, f"broker unreachable: {type(exc).__name__}", "broker_unavailable")


class UnderlyingsSchema(Schema):
    underlyings = fields.List(fields.String())


class ChainQuoteSchema(Schema):
    instrument_token = fields.Integer()
    tradingsymbol = fields.String()
    lot_size = fields.Integer()
    last_price = fields.Float(allow_none=True)
    change = fields.Float(allow_none=True)
    oi = fields.Integer(allow_none=True)
    volume = fields.Integer(allow_none=True)
    iv = fields.Float(allow_none=True, metadata={"description": "implied volatility, annualised (0.15 = 15 %)"})
    delta = fields.Float(allow_none=True)
    gamma = fields.Float(allow_none=True)
    theta = fields.Float(allow_none=True, metadata={"description": "per calendar day"})
    vega = fields.Float(allow_none=True, metadata={"description": "per volatility point"})
    rho = fields.Float(allow_none=True, metadata={"description": "per percentage point of rate"})


class StrikeRowSchema(Schema):
    strike = fields.Float()
    CE = fields.Nested(ChainQuoteSchema, allow_none=True)
    PE = fields.Nested(ChainQuoteSchema, allow_none=True)


class PriceRefSchema(Schema):
    instrument_token = fields.Integer()
    tradingsymbol = fields.String()
    last_price = fields.Float(allow_none=True)


class ChainSchema(Schema):
    underlying = fields.String()
    expiry = fields.String()
    expiries = fields.List(fields.String())
    spot = fields.Nested(PriceRefSchema, allow_none=True)
    future = fields.Nested(PriceRefSchema, allow_none=True)
    atm_strike = fields.Float(allow_none=True)
    lot_size = fields.Integer()
    strikes = fields.List(fields.Nested(StrikeRowSchema))
    updated_at = fields.String()


@blp.route("/option-chain/underlyings", methods=["GET"])
@blp.response(200, UnderlyingsSchema)
def underlyings():
    """Underlyings with live options in the instrument registry."""
    authenticate()
    return {"underlyings": registry().option_underlyings()}


@blp.route("/option-chain", methods=["GET"])
@blp.arguments(ChainQuerySchema, location="query")
@blp.response(200, ChainSchema)
@blp.errors(404)
def chain(query):
    """The live chain: per strike CE/PE LTP, change, OI, volume, IV and Greeks from the latest ticks.

    Greeks units: theta per calendar day, vega per volatility point, rho per rate point.
    """
    authenticate()
    return option_chain.build_chain(registry(), get_redis(), query["underlying"].upper(), query.get("expiry"))


class HistorySchema(Schema):
    instrument_token = fields.Integer()
    interval = fields.String()
    candles = fields.List(fields.Dict(), metadata={"description": "date, open, high, low, close, volume(, oi)"})


class PositionsSchema(Schema):
    net = fields.List(fields.Dict())
    day = fields.List(fields.Dict())


@blp.route("/history", methods=["GET"])
@blp.arguments(HistoryQuerySchema, location="query")
@blp.response(200, HistorySchema)
def history(query):
    """Historical candles from the broker (`[date, open, high, low, close, volume(, oi)]` as objects)."""
    if query["from_ts"] > query["to_ts"]:
        raise ApiError(422, "from_ts must not be after to_ts", details={"from_ts": ["after to_ts"]})
    creds = _credentials_for(query.get("account_id"))
    kite = kite_client(creds)
    candles = _broker(lambda: kite.historical_data(query["instrument_token"], query["from_ts"], query["to_ts"],
                                                   query["interval"], oi=query["oi"]))
    return {"instrument_token": query["instrument_token"], "interval": query["interval"], "candles": candles}


@blp.route("/quote", methods=["GET"])
@blp.arguments(QuoteQuerySchema, location="query")
@blp.doc(responses={"200": {"description": "quotes keyed by EXCHANGE:SYMBOL, as Kite answers them",
                             "content": {"application/json": {"schema": {
                                 "type": "object", "additionalProperties": {"type": "object"}}}}}})
def quote(query):
    """Full quotes from the broker for `i=EXCHANGE:SYMBOL` (repeated)."""
    kite = kite_client(_credentials_for(query.get("account_id")))
    return _broker(lambda: kite.quote(query["i"]))


@blp.route("/portfolio/positions", methods=["GET"])
@blp.arguments(PositionsQuerySchema, location="query")
@blp.response(200, PositionsSchema)
def positions(query):
    """The account's positions at the broker (`net` and `day`)."""
    kite = kite_client(_credentials_for(query["account_id"]))
    return _broker(kite.positions)
