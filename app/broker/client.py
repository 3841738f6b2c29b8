"""The official kiteconnect client, pointed at KITE_API_ROOT (real Kite or the paper broker),
and the per-process cache of each account's client used for order calls — routed through the
account's egress (app.broker.egress), which market data and the login do not need."""
from __future__ import annotations

import os
import time

from kiteconnect import KiteConnect

from app.accounts import Credentials, credentials, egress_of
from app.broker import account_versions
from app.broker.egress import route
from app.core.config import get_settings
from app.core.db import new_session
from app.models import Account


def kite_client(creds: Credentials, timeout: float | None = None) -> KiteConnect:
    settings = get_settings()
    kite = KiteConnect(api_key=creds.api_key, access_token=creds.access_token,
                       root=settings.kite_api_root, timeout=timeout or settings.broker_timeout_s)
    return kite


def exchange_request_token(creds: Credentials, request_token: str) -> dict:
    """Kite login: trade a request_token for an access token (checksum computed by the client)."""
    return kite_client(creds).generate_session(request_token, api_secret=creds.api_secret)


_clients: dict[str, tuple[float, str, KiteConnect]] = {}
CLIENT_TTL_S = 30.0


def broker_client(account_id: str) -> KiteConnect:
    """A KiteConnect per account and process, reused so its HTTP connection stays open, sending
    through the account's egress; rebuilt when the account changes (its version token moves)."""
    settings = get_settings()
    cached = _clients.get(account_id)
    # The token is read before the account: a change racing this rebuild is seen at the next call.
    key = f"{os.getpid()}|{settings.kite_api_root}|{account_versions.current(account_id)}"
    if cached and cached[1] == key and time.monotonic() - cached[0] < CLIENT_TTL_S:
        return cached[2]
    with new_session() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise LookupError(f"account {account_id!r} not found")
        creds, egress = credentials(account), egress_of(account)
    client = kite_client(creds)
    route(client, egress)
    _clients[account_id] = (time.monotonic(), key, client)
    return client


def forget_client(account_id: str) -> None:
    _clients.pop(account_id, None)
