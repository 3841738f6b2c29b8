from marshmallow import Schema, fields

from app.web import health as health_checks
from app.web.auth import authenticate
from app.web.errors import ApiError
from app.web.blueprint import Blueprint

blp = Blueprint("health", __name__, description="Service health")


class HealthSchema(Schema):
    status = fields.String(metadata={"enum": ["ok", "degraded", "unavailable"]})
    checks = fields.Dict(keys=fields.String(), values=fields.Dict())
    tasks = fields.Dict(keys=fields.String(), values=fields.Integer())
    queues = fields.Dict(keys=fields.String(), values=fields.Integer())
    egress = fields.Dict(keys=fields.String(), metadata={
        "description": "with a key, per active account it may use, how its order requests leave: {source_address} "
                       "or {proxy} (credentials masked); null: the default route"})
    sessions = fields.Dict(keys=fields.String(), values=fields.Dict(), metadata={
        "description": "with a key, per active account it may use, its Kite session: state (active | expired | missing), expires_at, "
                       "expired_at and reason, login_url"})


@blp.route("/health")
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema, description="the database or Redis is down")
@blp.doc(security=[])
def health():
    """Health: `ok`, `degraded` (200) or 503 when the database or Redis is down. Open, and then it names no
    account; with a key, also the detail of the accounts the key may use: `sessions`, `egress` and
    `checks.broker.accounts` (the status counts every account either way)."""
    return health_checks.report(_accounts_visible_to_caller())  # (body, status)


def _accounts_visible_to_caller():
    """The open endpoint names no account without a valid key."""
    try:
        return authenticate().may_access
    except ApiError:
        return None
