"""Service accounts of their own for integration tests: a paper-broker api key nobody else uses, so the
test's orders, positions, limits and order rate are only its own."""
from __future__ import annotations

import secrets

import requests


def paper_account(broker_root: str, prefix: str, cash: float = 1e9) -> tuple[str, dict]:
    """(account_id, credentials): the api key made at the paper broker with `cash`, the account stored
    in the service (its session live with the paper access token)."""
    from app import accounts as account_service
    from app.core.db import session_scope

    suffix = secrets.token_hex(4)
    account_id = f"{prefix}-{suffix}"
    creds = {"api_key": f"paper-{prefix}-{suffix}", "api_secret": f"secret-{suffix}", "access_token": f"tok-{suffix}"}
    requests.post(f"{broker_root}/_sim/accounts", json={**creds, "cash": cash}, timeout=10).raise_for_status()
    with session_scope() as session:
        account_service.add_account(session, account_id, **creds)
    return account_id, creds


def retire(account_ids) -> None:
    """Accounts a test is done with: inactive, so /health and the stream no longer look at them (a test
    that expired a session or halted an account leaves nothing for the next test to meet)."""
    from app import accounts as account_service
    from app.core.db import session_scope

    with session_scope() as session:
        for account_id in account_ids:
            session.get(account_service.Account, account_id).active = False
