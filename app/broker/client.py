"""The official kiteconnect client, pointed at KITE_API_ROOT (real Kite or the paper broker),
and the per-process cache of each account's client used for order calls — routed through the
account's egress (app.broker.egress), which market data and the login do not need."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from urllib.parse import urljoin

from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_exceptions

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


def order_book_rows(kite: KiteConnect, tags: Iterable[str] = (), order_ids: Iterable[str] = ()) -> list[dict]:
    """The rows of the broker's order book with one of `tags` or `order_ids`, as `kite.orders()` has them.

    Kite has no query for a few orders: GET /orders is the account's whole day, up to 5,000 orders.
    Parsed whole it is ~2.5 KB of small objects per order at once, a high-water mark that a worker
    process keeps (bench/soak.py: its memory grew ~1.5 MiB a minute at the full order rate). Here a row
    not asked for is dropped as soon as it is parsed. Same request (the client's session: its egress,
    timeout and proxies) and same errors as kiteconnect's (`KiteConnect._request`, whose parts it uses).
    """
    wanted_tags = {str(tag) for tag in tags if tag}
    wanted_ids = {str(order_id) for order_id in order_ids if order_id}
    headers = {"X-Kite-Version": kite.kite_header_version, "User-Agent": kite._user_agent()}
    if kite.api_key and kite.access_token:
        headers["Authorization"] = f"token {kite.api_key}:{kite.access_token}"
    response = kite.reqsession.get(urljoin(kite.root, kite._routes["orders"]), headers=headers,
                                   verify=not kite.disable_ssl, timeout=kite.timeout, proxies=kite.proxies)
    if "json" not in response.headers.get("content-type", ""):
        raise kite_exceptions.DataException(f"Unknown Content-Type ({response.headers.get('content-type')}) "
                                            f"with response: ({response.content[:500]!r})")

    def keep(pairs: list[tuple]) -> dict | None:
        row = dict(pairs)
        if "order_id" in row and "transaction_type" in row:  # an order, not the envelope or a nested object
            if str(row.get("tag")) not in wanted_tags and str(row["order_id"]) not in wanted_ids:
                return None
        return row

    try:
        body = json.loads(response.content, object_pairs_hook=keep)
    except ValueError:
        raise kite_exceptions.DataException("Couldn't parse the JSON response received from the server: "
                                            f"{response.content[:500]!r}") from None
    if body.get("status") == "error" or body.get("error_type"):
        if kite.session_expiry_hook and response.status_code == 403 and body["error_type"] == "TokenException":
            kite.session_expiry_hook()
        error = getattr(kite_exceptions, body.get("error_type") or "", kite_exceptions.GeneralException)
        raise error(body["message"], code=response.status_code)
    return kite._format_response([row for row in body["data"] if row is not None])
