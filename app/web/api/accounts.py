"""Accounts: admin registration, listing, egress, and the Kite login by hand (request_token → access token);
the one-click login is app.web.api.kite_login."""
from kiteconnect import exceptions as kite_errors
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from app import accounts as account_service
from app.web.auth import authenticate, require_account, require_admin
from app.broker.client import exchange_request_token
from app.broker.egress import Egress, InvalidEgress, checked_proxy_url, checked_source_address
from app.core.db import session_scope
from app.kite_session.announce import session_started
from app.kite_session.state import session_view
from app.orders.budget import budget_views
from app.risk.halt import halted_view
from app.web.api.kill_switch import HaltedSchema
from app.web.blueprint import Blueprint
from app.web.errors import ApiError
from app.market.instrument_refresh import request_refresh

blp = Blueprint("accounts", __name__, description="Kite accounts")

ACCOUNT_ID = validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$", error="letters, digits, '_', '.', '-' (1-64)")
# Credentials travel in HTTP headers to the broker: printable ASCII, no spaces.
CREDENTIAL = validate.Regexp(r"^[\x21-\x7e]+$", error="printable ASCII without spaces")


class EgressCheckedString(fields.String):
    """A string an egress check (app.broker.egress) normalises, or refuses with its reason."""

    def __init__(self, check, **kwargs) -> None:
        self.check = check
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return self.check(text)
        except InvalidEgress as exc:
            raise ValidationError(str(exc)) from None


class EgressSchema(Schema):
    """How the account's order requests leave: a local source address, or an HTTP(S) proxy."""

    source_address = EgressCheckedString(
        checked_source_address, validate=validate.Length(max=64),
        metadata={"description": "an IP address of this machine (the account's static IP); "
                                 "connections to the broker are bound to it"})
    proxy = EgressCheckedString(
        checked_proxy_url, validate=validate.Length(max=2048),
        metadata={"description": "http(s)://[user:password@]host[:port] of a proxy with the account's static IP; "
                                 "shown with its credentials masked"})

    @validates_schema
    def _one_route(self, data, **kwargs):
        if len(data) != 1:
            raise ValidationError("give either source_address or proxy")

    @post_load
    def _egress(self, data, **kwargs) -> Egress:
        return Egress(**data)


class EgressViewSchema(Schema):
    source_address = fields.String()
    proxy = fields.String()


class AccountCreateSchema(Schema):
    account_id = fields.String(required=True, validate=ACCOUNT_ID)
    api_key = fields.String(required=True, validate=[validate.Length(min=1, max=64), CREDENTIAL])
    api_secret = fields.String(required=True, validate=[validate.Length(min=1, max=256), CREDENTIAL],
                               load_only=True)
    access_token = fields.String(validate=[validate.Length(min=1, max=256), CREDENTIAL], load_only=True)
    egress = fields.Nested(EgressSchema, allow_none=True)


class AccountChangeSchema(Schema):
    egress = fields.Nested(EgressSchema, required=True, allow_none=True,
                           metadata={"description": "null: the default route"})


class OrderBudgetSchema(Schema):
    """Today's order budget (IST day), shared by the accounts of one Zerodha user."""

    used = fields.Integer(metadata={"description": "placements sent today, rejected ones included"})
    queued = fields.Integer(metadata={"description": "orders accepted and not sent yet"})
    remaining = fields.Integer(metadata={"description": "placements new orders may still use today"})
    limit = fields.Integer(metadata={"description": "ORDER_BUDGET_PER_DAY"})
    resets_at = fields.String(metadata={"description": "the next midnight IST (UTC ISO-8601)"})


class KiteSessionSchema(Schema):
    """The account's Kite session (app.kite_session.state): tokens die at 06:00 IST every day."""

    state = fields.String(metadata={"description": "active | expired | missing (never logged in)"})
    login_at = fields.String(allow_none=True)
    expires_at = fields.String(allow_none=True, metadata={"description": "active: the next 06:00 IST"})
    expires_in_s = fields.Integer(allow_none=True)
    expired_at = fields.String(allow_none=True, metadata={"description": "expired: when"})
    reason = fields.String(allow_none=True, metadata={"description": "expired: what said so"})
    login_url = fields.String(metadata={"description": "GET it to log in again (redirects to Kite)"})


class AccountSchema(Schema):
    account_id = fields.String()
    api_key = fields.String()
    broker_user_id = fields.String(allow_none=True)
    has_access_token = fields.Boolean()
    session = fields.Nested(KiteSessionSchema)
    active = fields.Boolean()
    egress = fields.Nested(EgressViewSchema, allow_none=True)
    created_at = fields.String()
    order_budget = fields.Nested(OrderBudgetSchema, allow_none=True, metadata={
        "description": "GET only: today's order budget (null when Redis cannot be read)"})
    halted = fields.Nested(HaltedSchema, allow_none=True, metadata={
        "description": "GET only: set while a kill switch has halted the account (no new orders until "
                       "POST /accounts/{id}/resume); null otherwise"})


class SessionRequestSchema(Schema):
    request_token = fields.String(required=True, validate=[validate.Length(min=1, max=256), CREDENTIAL])


class SessionSchema(Schema):
    account_id = fields.String()
    broker_user_id = fields.String(allow_none=True)
    login_time = fields.String(allow_none=True)
    session = fields.Nested(KiteSessionSchema)


@blp.route("/accounts", methods=["POST"])
@blp.arguments(AccountCreateSchema)
@blp.response(201, AccountSchema)
@blp.errors(409)
def create_account(body):
    """Register a Kite account (admin key). Secrets are stored encrypted and never returned."""
    require_admin()
    with session_scope() as session:
        account = account_service.add_account(session, body["account_id"], body["api_key"],
                                              body["api_secret"], body.get("access_token"), body.get("egress"))
        view = account_service.public_view(account)
    request_refresh()  # the first account lets the instrument registry load
    return view


@blp.route("/accounts/<account_id>", methods=["PATCH"])
@blp.arguments(AccountChangeSchema)
@blp.response(200, AccountSchema)
@blp.errors(404)
def change_account(body, account_id):
    """Change how the account's order requests leave the service (admin key); every process uses
    the new route from its next broker call."""
    require_admin()
    with session_scope() as session:
        account = account_service.set_egress(session, account_id, body["egress"])
        view = account_service.public_view(account)
    return view


@blp.route("/accounts", methods=["GET"])
@blp.response(200, AccountSchema(many=True))
def list_accounts():
    """Accounts this API key may see (all of them for an admin key)."""
    principal = authenticate()
    with session_scope() as session:
        views = [{**account_service.public_view(a), "halted": halted_view(a)}
                 for a in account_service.list_accounts(session) if principal.may_access(a.id)]
    budgets = budget_views([view["account_id"] for view in views])
    return [{**view, "order_budget": budgets[view["account_id"]]} for view in views]


@blp.route("/accounts/<account_id>", methods=["GET"])
@blp.response(200, AccountSchema)
@blp.errors(404)
def get_account(account_id):
    """The account, with today's order budget and its halted state (kill switch)."""
    require_account(account_id)
    with session_scope() as session:
        account = account_service.get_account(session, account_id)
        view = {**account_service.public_view(account), "halted": halted_view(account)}
    return {**view, "order_budget": budget_views([account_id])[account_id]}


@blp.route("/accounts/<account_id>/session", methods=["POST"])
@blp.arguments(SessionRequestSchema)
@blp.response(200, SessionSchema)
@blp.errors(404, 503)
def create_session(body, account_id):
    """Exchange a Kite `request_token` for an access token (admin key), with the official client."""
    require_admin()
    with session_scope() as session:
        creds = account_service.credentials(account_service.get_account(session, account_id))
    try:
        data = exchange_request_token(creds, body["request_token"])
    except (kite_errors.TokenException, kite_errors.InputException) as exc:
        raise ApiError(422, f"the broker refused the request token: {exc}", "broker_rejected")
    except kite_errors.KiteException as exc:
        raise ApiError(503, f"broker error: {exc}", "broker_unavailable")
    except Exception as exc:  # transport failures of the requests library
        raise ApiError(503, f"broker unreachable: {type(exc).__name__}", "broker_unavailable")
    with session_scope() as session:
        account = account_service.set_access_token(session, account_id, data["access_token"], data.get("user_id"))
        view = session_view(account)
    session_started(account_id, view)  # announced, and the orders held meanwhile go out
    request_refresh()
    login_time = data.get("login_time")
    return {"account_id": account_id, "broker_user_id": data.get("user_id"), "session": view,
            "login_time": login_time.isoformat() if hasattr(login_time, "isoformat") else login_time}
