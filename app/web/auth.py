"""Who is calling, decided here once per request: an API key or, when JWT_JWKS_URL is set, a bearer token.

API keys: `API_KEYS="key1=primary,secondary;key2=*"` — a key sees only its accounts, `*` is admin. A
key may be given by its SHA-256 instead (`sha256:<64 hex digits>=primary`), so the plain key need not
sit in the environment. Bearer tokens (JWT): app.web.jwt_auth; their accounts come from a claim.

Where a credential may be: REST reads headers only (`X-API-Key`, `Authorization: Bearer <token>`),
since query strings end up in proxies' and browsers' logs. A WebSocket URL may carry `?api_key=` or
`?access_token=` instead, because browsers cannot set headers on a WebSocket. One credential per request.

Every route that touches an account calls :func:`require_account`.
"""
from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Iterable

from flask import current_app, g, request

from app.web.errors import ApiError
from app.web.jwks import KeysUnavailable
from app.web.jwt_auth import ALL_ACCOUNTS, InvalidToken, TokenVerifier

ADMIN = "*"
HASHED_PREFIX = "sha256:"
URL_CREDENTIALS = ("api_key", "access_token")  # query parameters read on WebSocket routes only


@dataclass(frozen=True)
class Principal:
    key_id: str  # a short, loggable name of the credential, never the credential
    accounts: frozenset[str]
    expires_at: float | None = None  # epoch seconds a bearer token stops being accepted; None: an API key

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.accounts

    def may_access(self, account_id: str) -> bool:
        return self.is_admin or account_id in self.accounts

    def visible_accounts(self, all_accounts: Iterable[str]) -> list[str]:
        return sorted(all_accounts) if self.is_admin else sorted(self.accounts)


def parse_api_keys(spec: str) -> dict[str, frozenset[str]]:
    """Key (or `sha256:<hex>`, lower-cased) → accounts. A malformed digest is a ValueError at start-up:
    a truncated paste would otherwise lock its holder out without a word."""
    keys: dict[str, frozenset[str]] = {}
    for entry in spec.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        key, _, accounts = entry.partition("=")
        key = key.strip()
        names = frozenset(a.strip() for a in accounts.split(",") if a.strip())
        if key.lower().startswith(HASHED_PREFIX):
            digest = key[len(HASHED_PREFIX):].lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError("API_KEYS: a sha256: entry needs the key's SHA-256 as 64 hex digits "
                                 "(printf %s \"$KEY\" | sha256sum)")
            key = HASHED_PREFIX + digest
        if key and names:
            keys[key] = names
    return keys


def find_principal(presented: str | None, keys: dict[str, frozenset[str]]) -> Principal | None:
    """Compare against every key in constant time so timing reveals nothing."""
    if not presented:
        return None
    plain = presented.encode()
    digest = hashlib.sha256(plain).hexdigest().encode()
    found: Principal | None = None
    for key, accounts in keys.items():
        if key.startswith(HASHED_PREFIX):
            stored = key[len(HASHED_PREFIX):]
            if hmac.compare_digest(stored.encode(), digest):
                found = Principal(key_id=HASHED_PREFIX + stored[:8] + "…", accounts=accounts)
        elif hmac.compare_digest(key.encode(), plain):
            found = Principal(key_id=key[:4] + "…", accounts=accounts)
    return found


def authenticate() -> Principal:
    """The caller's principal, or 401 (503 when a token's keys cannot be fetched). Cached on `g`."""
    principal = g.get("principal")
    if principal is None:
        principal = _principal_of_request()
        g.principal = principal
    return principal


def require_account(account_id: str) -> Principal:
    """401 without a valid credential, 403 when it may not use this account."""
    principal = authenticate()
    if not principal.may_access(account_id):
        raise ApiError(403, f"this {_credential_name(principal)} may not access account {account_id!r}")
    return principal


def require_admin() -> Principal:
    principal = authenticate()
    if not principal.is_admin:
        raise ApiError(403, f"this operation needs an admin {_credential_name(principal)}")
    return principal


def _principal_of_request() -> Principal:
    verifier: TokenVerifier | None = current_app.extensions.get("token_verifier")
    on_socket = _is_websocket_route()
    in_url = [name for name in URL_CREDENTIALS if name in request.args]
    if in_url and not on_socket:
        raise ApiError(401, f"?{in_url[0]}= is accepted on WebSocket URLs only: on REST send the X-API-Key "
                            "header (or Authorization: Bearer), since query strings end up in logs",
                       headers=_challenge(verifier))
    keys = [k for k in (request.headers.get("X-API-Key"), request.args.get("api_key") if on_socket else None) if k]
    tokens = [t for t in (_bearer_header(), request.args.get("access_token") if on_socket else None)
              if t is not None] if verifier else []
    if len(keys) + len(tokens) > 1:
        raise ApiError(401, "send one credential: an API key or a bearer token, in one place",
                       headers=_challenge(verifier))
    if tokens:
        return _token_principal(verifier, tokens[0])
    principal = find_principal(keys[0] if keys else None, current_app.extensions["api_keys"])
    if principal is None:
        wanted = "X-API-Key header or Authorization: Bearer token" if verifier else "X-API-Key header"
        raise ApiError(401, f"missing or invalid API key ({wanted})", headers=_challenge(verifier))
    return principal


def _token_principal(verifier: TokenVerifier, token: str) -> Principal:
    try:
        verified = verifier.verify(token)
    except InvalidToken as exc:
        reason = str(exc).replace("\\", "\\\\").replace('"', '\\"')
        raise ApiError(401, f"invalid bearer token: {exc}",
                       headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{reason}"'})
    except KeysUnavailable:
        raise ApiError(503, "bearer tokens cannot be checked now: the token issuer's keys are unavailable",
                       headers={"Retry-After": str(max(1, math.ceil(verifier.keys.min_refresh_s)))})
    accounts = frozenset({ADMIN}) if ALL_ACCOUNTS in verified.accounts else verified.accounts
    return Principal(key_id=f"jwt:{verified.subject}", accounts=accounts, expires_at=verified.usable_until)


def _bearer_header() -> str | None:
    """The token of `Authorization: Bearer <token>`; None without one (another scheme is not ours)."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _is_websocket_route() -> bool:
    # flask-sock registers its routes with websocket=True; werkzeug routes only handshakes to them.
    return bool(request.url_rule is not None and request.url_rule.websocket)


def _challenge(verifier: TokenVerifier | None) -> dict[str, str]:
    """RFC 6750: a 401 without a (valid) token names the scheme, with no error code."""
    return {"WWW-Authenticate": "Bearer"} if verifier else {}


def _credential_name(principal: Principal) -> str:
    return "token" if principal.expires_at is not None else "API key"
