"""Kite's login page, `GET /connect/login?v=3&api_key=K[&redirect_params=…]`.

The paper broker signs the user in at once: it answers 302 to the app's registered redirect URL with
`request_token=…&action=login&type=login&status=success`, then the pairs of `redirect_params` (a
URL-encoded query string) echoed, as Kite does. It is a browser page, so failures are plain-text 400
pages, not Kite's JSON.
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web


def validate_redirect_url(value) -> str | None:
    """`redirect_url` of POST /_sim/accounts: an absolute http(s) URL, or null/"" to clear."""
    if value in (None, ""):
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("redirect_url must be an absolute http(s) URL (or null to clear)")
    return value


def redirect_location(redirect_url: str, request_token: str, redirect_params: str) -> str:
    parts = urlsplit(redirect_url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    pairs += [("request_token", request_token), ("action", "login"), ("type", "login"), ("status", "success")]
    pairs += parse_qsl(redirect_params, keep_blank_values=True)
    return urlunsplit(parts._replace(query=urlencode(pairs)))


def _page(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain")


class LoginPage:
    def __init__(self, accounts):
        self.accounts = accounts   # sim.accounts.Accounts

    async def handle(self, request: web.Request) -> web.Response:
        api_key = request.query.get("api_key", "")
        if not api_key:
            return _page(400, "Login failed: the login URL has no api_key "
                              "(use /connect/login?v=3&api_key=YOUR_API_KEY).")
        account = self.accounts.find(api_key)
        if account is None:
            return _page(400, f"Login failed: invalid api_key {api_key!r}: no app with this api_key is "
                              f"registered with the paper broker (POST /_sim/accounts or --account).")
        if not account.redirect_url:
            return _page(400, f"Login failed: the app {api_key!r} has no redirect URL registered "
                              f"(POST /_sim/accounts {{\"api_key\": ..., \"redirect_url\": ...}}).")
        token = self.accounts.sessions.issue_request_token(api_key)
        location = redirect_location(account.redirect_url, token, request.query.get("redirect_params", ""))
        raise web.HTTPFound(location)
