"""Instrument registry: lookups and an on-demand refresh (beat refreshes daily)."""
from datetime import date

from marshmallow import Schema, fields, validate

from app.web.auth import authenticate, require_admin
from app.web.blueprint import Blueprint
from app.web.errors import ApiError
from app.market.instrument_refresh import REFRESH_TASK
from app.market.instruments import registry
from app.core.task_client import send_task

blp = Blueprint("instruments", __name__, description="Instrument registry")


class InstrumentSchema(Schema):
    instrument_token = fields.Integer()
    exchange_token = fields.Integer()
    tradingsymbol = fields.String()
    name = fields.String()
    exchange = fields.String()
    segment = fields.String()
    instrument_type = fields.String()
    expiry = fields.Date(allow_none=True)
    strike = fields.Float()
    tick_size = fields.Float()
    lot_size = fields.Integer()


class InstrumentQuerySchema(Schema):
    name = fields.String(validate=validate.Length(max=64))
    exchange = fields.String(validate=validate.Length(max=16))
    instrument_type = fields.String(validate=validate.OneOf(["CE", "PE", "FUT", "EQ"]))
    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=5000))


class RefreshSchema(Schema):
    task_id = fields.String()


@blp.route("/instruments", methods=["GET"])
@blp.arguments(InstrumentQuerySchema, location="query")
@blp.response(200, InstrumentSchema(many=True))
def list_instruments(query):
    """Instruments from the registry, filtered by underlying name, exchange and type."""
    authenticate()
    found = [i for i in registry().all()
             if (not query.get("name") or i.name == query["name"])
             and (not query.get("exchange") or i.exchange == query["exchange"])
             and (not query.get("instrument_type") or i.instrument_type == query["instrument_type"])]
    found.sort(key=lambda i: (i.name, i.expiry or date.min, i.strike, i.instrument_type))
    return found[: query["limit"]]


@blp.route("/instruments/<int:instrument_token>", methods=["GET"])
@blp.response(200, InstrumentSchema)
@blp.errors(404)
def get_instrument(instrument_token):
    authenticate()
    info = registry().by_token(instrument_token)
    if info is None:
        raise ApiError(404, f"instrument {instrument_token} is not in the registry")
    return info


@blp.route("/instruments/refresh", methods=["POST"])
@blp.response(202, RefreshSchema)
def refresh():
    """Reload the broker's instrument dump now (admin); runs on the maintenance queue."""
    require_admin()
    result = send_task(REFRESH_TASK)
    return {"task_id": result.id}
