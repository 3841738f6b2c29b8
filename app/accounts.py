"""Accounts, their Kite credentials (stored encrypted, never returned or logged) and their egress."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.broker import account_versions
from app.broker.egress import Egress
from app.core.crypto import decrypt, encrypt
from app.kite_session.state import session_view, start_session
from app.models import Account


class AccountExists(Exception):
    pass


class AccountNotFound(Exception):
    pass


@dataclass(frozen=True)
class Credentials:
    account_id: str
    api_key: str
    api_secret: str
    access_token: str | None


def add_account(session: Session, account_id: str, api_key: str, api_secret: str,
                access_token: str | None = None, egress: Egress | None = None) -> Account:
    if session.get(Account, account_id) is not None:
        raise AccountExists(account_id)
    account = Account(id=account_id, api_key=api_key, api_secret_enc=encrypt(api_secret),
                      access_token_enc=encrypt(access_token) if access_token else None)
    if access_token:
        start_session(account)  # a token registered by hand lives until the next 06:00 IST too
    _store_egress(account, egress)
    session.add(account)
    session.flush()
    return account


def get_account(session: Session, account_id: str) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise AccountNotFound(account_id)
    return account


def list_accounts(session: Session) -> list[Account]:
    return list(session.scalars(select(Account).order_by(Account.id)))


def set_access_token(session: Session, account_id: str, access_token: str, broker_user_id: str | None) -> Account:
    account = get_account(session, account_id)
    account.access_token_enc = encrypt(access_token)
    account.broker_user_id = broker_user_id
    start_session(account)  # the caller announces it once committed (app.kite_session.announce)
    account_versions.changed(session, account_id)  # cached clients still hold the old token
    return account


def set_egress(session: Session, account_id: str, egress: Egress | None) -> Account:
    """Route the account's broker requests through `egress` (None: the default route)."""
    account = get_account(session, account_id)
    _store_egress(account, egress)
    account_versions.changed(session, account_id)  # every process rebuilds its client of the account
    return account


def _store_egress(account: Account, egress: Egress | None) -> None:
    account.egress_source_address = egress.source_address if egress else None
    # A proxy URL may hold credentials: stored encrypted like the Kite secrets.
    account.egress_proxy_enc = encrypt(egress.proxy) if egress and egress.proxy else None


def egress_of(account: Account) -> Egress | None:
    if account.egress_source_address:
        return Egress(source_address=account.egress_source_address)
    if account.egress_proxy_enc:
        return Egress(proxy=decrypt(account.egress_proxy_enc))
    return None


def credentials(account: Account) -> Credentials:
    return Credentials(
        account_id=account.id,
        api_key=account.api_key,
        api_secret=decrypt(account.api_secret_enc),
        access_token=decrypt(account.access_token_enc) if account.access_token_enc else None,
    )


def public_view(account: Account) -> dict:
    """What an API client may see of an account: no secret, no token, no proxy credentials."""
    egress = egress_of(account)
    return {
        "account_id": account.id,
        "api_key": account.api_key,
        "broker_user_id": account.broker_user_id,
        "has_access_token": account.access_token_enc is not None,
        "session": session_view(account),
        "active": account.active,
        "egress": egress.public() if egress else None,
        "created_at": account.created_at.isoformat(),
    }
