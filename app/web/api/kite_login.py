"""The one-click Kite login (app.kite_session.login).

`GET /accounts/{id}/login` (admin key or the account's own) sends the person to Kite's login page
— a 302 for a browser or curl, the URL as JSON for the dashboard (`Accept: application/json`),
which cannot put its key on a navigation. `GET /kite/callback` is the redirect URL to register in
Kite's developer console: public, since the sealed single-use state is its authentication; it
answers a small HTML page to a browser (JSON to other clients), and changes nothing when it refuses.
"""
from __future__ import annotations

from html import escape

from flask import make_response, redirect, request
from marshmallow import Schema, fields

from app import accounts as account_service
from app.core.db import session_scope
from app.kite_session.login import LoginRefused, complete_login, login_url
from app.market.instrument_refresh import request_refresh
from app.web.auth import require_account
from app.web.api.accounts import KiteSessionSchema
from app.web.blueprint import Blueprint
from app.web.errors import ApiError

blp = Blueprint("kite_login", __name__, description="Kite login (daily session)")

DASHBOARD = "/dashboard"
HTML_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
                                           "frame-ancestors 'none'",
                "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


class LoginUrlSchema(Schema):
    account_id = fields.String()
    login_url = fields.String(metadata={"description": "Kite's login page for the account's app, with a "
                                                       "signed state valid for 10 minutes, used once"})


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" or request.args.get("format") == "json"


@blp.route("/accounts/<account_id>/login", methods=["GET"])
@blp.doc(responses={"200": {"description": "with `Accept: application/json`: the login URL",
                            "content": {"application/json": {"schema": LoginUrlSchema}}},
                    "302": {"description": "to Kite's login page"}})
@blp.errors(404)
def start_login(account_id):
    """Log the account in to Kite: redirects to Kite's login page, which comes back to /kite/callback."""
    require_account(account_id)
    with session_scope() as session:
        api_key = account_service.get_account(session, account_id).api_key
    url = login_url(account_id, api_key)
    if _wants_json():
        return LoginUrlSchema().dump({"account_id": account_id, "login_url": url})
    response = redirect(url, code=302)
    response.headers["Cache-Control"] = "no-store"
    return response


class LoggedInSchema(Schema):
    account_id = fields.String()
    broker_user_id = fields.String(allow_none=True)
    session = fields.Nested(KiteSessionSchema)
    released_orders = fields.Integer(metadata={"description": "orders held while the session was dead, now sent"})


def _from_a_browser() -> bool:
    """A browser's navigation asks for text/html by name; other clients get JSON (the API's error shape)."""
    return any(value == "text/html" for value, _ in request.accept_mimetypes)


@blp.route("/kite/callback", methods=["GET"])
@blp.doc(security=[], responses={
    "200": {"description": "the account is logged in: an HTML page for a browser (Accept: text/html), "
                           "else JSON", "content": {**HTML_PAGE["content"],
                                                    "application/json": {"schema": LoggedInSchema}}},
    "400": {"description": "refused (forged, replayed, expired or foreign state; a failed login; a request "
                           "token Kite refuses): nothing changed. HTML for a browser, else the error shape",
            "content": {**HTML_PAGE["content"], "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    "404": {"description": "the state's account no longer exists"},
    "503": {"description": "Kite could not be reached to finish the login"}})
def kite_callback():
    """Kite's redirect after a login (register this URL as the app's redirect URL in Kite's console)."""
    try:
        done = complete_login(request.args.to_dict())
    except LoginRefused as exc:
        if not _from_a_browser():
            raise ApiError(exc.status, str(exc), "login_refused") from None
        return _page(exc.status, "Kite login refused", f"<p>{escape(str(exc))}</p><p>Nothing was changed.</p>")
    request_refresh()  # as POST /accounts/{id}/session: a first login lets the registry load
    if not _from_a_browser():
        return LoggedInSchema().dump(done.__dict__)
    target = f"{DASHBOARD}?logged_in={escape(done.account_id)}"
    held = (f"<p>{done.released_orders} order(s) held while the session was dead are going out now.</p>"
            if done.released_orders else "")
    body = (f"<p>Account <strong>{escape(done.account_id)}</strong> is logged in to Kite"
            f"{' as ' + escape(done.broker_user_id) if done.broker_user_id else ''}; the session lasts until "
            f"{escape(done.session['expires_at'] or 'the next 06:00 IST')}.</p>{held}"
            f"<p><a href=\"{target}\">Back to the dashboard</a></p>")
    return _page(200, "Logged in to Kite", body, refresh_to=target)


def _page(status: int, title: str, body: str, refresh_to: str | None = None):
    refresh = f'<meta http-equiv="refresh" content="3;url={refresh_to}">' if refresh_to else ""
    html = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>{refresh}"
            f"<style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")
    response = make_response(html, status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers.update(PAGE_HEADERS)
    return response
