"""API keys: `API_KEYS="key1=primary,secondary;key2=*"` — a key sees only its accounts, `*` is admin.

Every route that touches an account calls :func:`require_account`; WebSockets
authenticate the same way with the header or `?api_key=`.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Iterable

from flask import current_app, g, request

from app.web.errors import ApiError

ADMIN = "*"


@dataclass(frozen=True)
class Principal:
    key_id: str  # a short, loggable fingerprint of the key, never the key
    accounts: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.accounts

    def may_access(self, account_id: str) -> bool:
        return self.is_admin or account_id in self.accounts

    def visible_accounts(self, all_accounts: Iterable[str]) -> list[str]:
        return sorted(all_accounts) if self.is_admin else sorted(self.accounts)


def parse_api_keys(spec: str) -> dict[str, frozenset[str]]:
    keys: dict[str, frozenset[str]] = {}
    for entry in spec.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        key, _, accounts = entry.partition("=")
        names = frozenset(a.strip() for a in accounts.split(",") if a.strip())
        if key.strip() and names:
            keys[key.strip()] = names
    return keys


def find_principal(presented: str | None, keys: dict[str, frozenset[str]]) -> Principal | None:
    """Compare against every key in constant time so timing reveals nothing."""
    if not presented:
        return None
    found: Principal | None = None
    for key, accounts in keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = Principal(key_id=key[:4] + "…", accounts=accounts)
    return found


def presented_key() -> str | None:
    return request.headers.get("X-API-Key") or request.args.get("api_key")


def authenticate() -> Principal:
    """The caller's principal, or 401. Cached on `g` for the request."""
    principal = g.get("principal")
    if principal is None:
        principal = find_principal(presented_key(), current_app.extensions["api_keys"])
        if principal is None:
            raise ApiError(401, "missing or invalid API key (X-API-Key header)")
        g.principal = principal
    return principal


def require_account(account_id: str) -> Principal:
    """401 without a valid key, 403 when the key may not see this account."""
    principal = authenticate()
    if not principal.may_access(account_id):
        raise ApiError(403, f"this API key may not access account {account_id!r}")
    return principal


def require_admin() -> Principal:
    principal = authenticate()
    if not principal.is_admin:
        raise ApiError(403, "this operation needs an admin API key")
    return principal
