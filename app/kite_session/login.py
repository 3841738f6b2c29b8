"""The one-click Kite login: `GET /accounts/{id}/login` → Kite's login page → `GET /kite/callback`.

The state carried through Kite in `redirect_params` names the account. It is sealed under
CREDENTIALS_KEY (app.core.crypto.seal: encrypted and signed, so a forged or foreign one does not
open), dated (older than STATE_TTL_S is refused) and single use (its nonce is claimed in Redis
when the callback accepts it). The callback then trades the request token for an access token
once, with the official client, and stores it like `POST /accounts/{id}/session`.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from kiteconnect import exceptions as kite_errors

from app import accounts as account_service
from app.broker.client import exchange_request_token
from app.core.config import get_settings
from app.core.crypto import ExpiredSeal, InvalidSeal, open_seal, seal
from app.core.db import session_scope
from app.core.redis_client import get_redis
from app.kite_session.announce import session_started
from app.kite_session.state import session_view

STATE_TTL_S = 600  # a person logs in within minutes; Kite's request token itself lives a few
STATE_PURPOSE = "kite-login"
USED_STATE_KEY = "kite:login:used:{nonce}"
REAL_KITE_LOGIN = "https://kite.zerodha.com/connect/login"
REAL_KITE_API_HOST = "api.kite.trade"


class LoginRefused(Exception):
    """The callback cannot log the account in; `status` is the HTTP status of the page saying why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LoggedIn:
    account_id: str
    broker_user_id: str | None
    session: dict
    released_orders: int


def kite_login_page() -> str:
    """KITE_LOGIN_URL, else Kite's own page for real Kite, else the paper broker's `/connect/login`."""
    settings = get_settings()
    if settings.kite_login_url:
        return settings.kite_login_url
    root = settings.kite_api_root.rstrip("/")
    if urlsplit(root).hostname == REAL_KITE_API_HOST:
        return REAL_KITE_LOGIN
    return root + "/connect/login"


def new_state(account_id: str) -> str:
    return seal(json.dumps({"purpose": STATE_PURPOSE, "account_id": account_id, "nonce": secrets.token_urlsafe(16)}))


def login_url(account_id: str, api_key: str) -> str:
    """Where the person logs in: Kite's page for the account's app, with our state to come back with."""
    query = urlencode({"v": "3", "api_key": api_key, "redirect_params": urlencode({"state": new_state(account_id)})})
    return f"{kite_login_page()}?{query}"


def read_state(state: str | None) -> tuple[str, str]:
    """(account_id, nonce) of a genuine, recent state, or LoginRefused saying what is wrong with it."""
    if not state:
        raise LoginRefused("the callback has no state: start the login from /accounts/{id}/login")
    try:
        data = json.loads(open_seal(state, STATE_TTL_S))
    except ExpiredSeal:
        raise LoginRefused(f"this login link has expired (older than {STATE_TTL_S // 60} minutes): start again") from None
    except (InvalidSeal, ValueError):
        raise LoginRefused("the login state is not one this service issued (forged, damaged or from another "
                           "deployment)") from None
    if not isinstance(data, dict) or data.get("purpose") != STATE_PURPOSE or not isinstance(data.get("account_id"), str) \
            or not isinstance(data.get("nonce"), str):
        raise LoginRefused("the login state is not one this service issued")
    return data["account_id"], data["nonce"]


def complete_login(params: dict) -> LoggedIn:
    """Kite's redirect back: check it, exchange the request token once, store the new session."""
    account_id, nonce = read_state(params.get("state"))
    if params.get("status") != "success":
        raise LoginRefused(f"Kite reports the login of account {account_id!r} did not succeed "
                           f"(status={params.get('status')!r}): start again")
    request_token = params.get("request_token") or ""
    if not request_token or len(request_token) > 256 or not request_token.isprintable():
        raise LoginRefused("the callback has no usable request_token")
    with session_scope() as session:
        try:
            account = account_service.get_account(session, account_id)
        except account_service.AccountNotFound:
            raise LoginRefused(f"account {account_id!r} no longer exists", 404) from None
        creds = account_service.credentials(account)
        expected_user = account.broker_user_id
    # Claimed before the exchange: a replay of this redirect must not trade a second token.
    if not get_redis().set(USED_STATE_KEY.format(nonce=nonce), "1", nx=True, ex=STATE_TTL_S * 2):
        raise LoginRefused("this login link was already used: start again from the dashboard")
    try:
        data = exchange_request_token(creds, request_token)
    except (kite_errors.TokenException, kite_errors.InputException, kite_errors.PermissionException) as exc:
        raise LoginRefused(f"Kite refused the request token for account {account_id!r}: {exc}") from None
    except Exception as exc:  # KiteException 5xx or a transport failure
        raise LoginRefused(f"Kite could not be reached to finish the login ({type(exc).__name__}): try again",
                           503) from None
    user_id = data.get("user_id")
    if expected_user and user_id and user_id != expected_user:
        raise LoginRefused(f"this login is Kite user {user_id!r}, but account {account_id!r} belongs to "
                           f"{expected_user!r}: nothing was changed")
    with session_scope() as session:
        account = account_service.set_access_token(session, account_id, data["access_token"], user_id or expected_user)
        view = session_view(account)
    released = session_started(account_id, view)
    return LoggedIn(account_id, user_id, view, released)
