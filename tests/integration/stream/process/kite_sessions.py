"""Ending and starting the Kite sessions of the paper-broker accounts under a running stream, and
reading what the broker streams on each account's sockets."""
from __future__ import annotations

import time

from kiteconnect import KiteConnect

from tests.support.channels import ChannelListener

ENDING = "other"  # the account whose session ends (the order tests trade on `primary`)
KEEPING = "primary"


def stored_token(account_id: str) -> str:
    from app.accounts import credentials
    from app.core.db import session_scope
    from app.models import Account

    with session_scope() as session:
        return credentials(session.get(Account, account_id)).access_token


def log_in(paper_broker, accounts, account_id: str, token: str) -> None:
    """What a login does: the broker issues `token`, the service stores and announces it."""
    from app.accounts import set_access_token
    from app.core.db import session_scope
    from app.kite_session.announce import session_started
    from app.kite_session.state import session_view

    paper_broker.add_account(accounts[account_id]["api_key"], access_token=token)
    with session_scope() as session:
        view = session_view(set_access_token(session, account_id, token, None))
    session_started(account_id, view)


def log_out(paper_broker, accounts, account_id: str, token: str | None = None) -> str:
    """End the account's session at the broker, as the official client logs out (its ticker
    sockets are closed with 1008); the service is not told."""
    token = token or stored_token(account_id)
    KiteConnect(accounts[account_id]["api_key"], access_token=token, root=paper_broker.root).invalidate_access_token()
    return token


def carried(paper_broker, accounts) -> dict[str, int]:
    """Instruments the broker streams on each account's ticker sockets."""
    subscriptions = paper_broker.state()["ticker"]["subscriptions"]
    return {a: sum(subscriptions.get(accounts[a]["api_key"], [])) for a in (KEEPING, ENDING)}


def session_state(account_id: str) -> dict:
    from app.kite_session.state import account_session

    return account_session(account_id)


def every_token_ticks(redis_url: str, tokens, seconds: float) -> set[int]:
    """Tokens seen on the tick channels within `seconds` (stops once all were seen). Listens from
    now on: a batch published before the call does not count."""
    listener = ChannelListener(redis_url, "ticker:*")
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not set(tokens) <= seen:
            for _, _, batch in listener.collect(0.2):
                seen.update(t["instrument_token"] for t in batch["ticks"])
    finally:
        listener.close()
    return seen

