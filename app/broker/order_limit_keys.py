"""Which Zerodha account an account's order calls count against.

Kite applies its order limits (10/s, 400/min, 5,000 a day) to the Zerodha account, not to the
api key: several api keys of one Zerodha user — several accounts of this service — share them.
The service learns an account's Zerodha user at its login (`Account.broker_user_id`); until then
the account counts on its own. The rate limiter (app.broker.rate_limit) and the daily budget
(app.broker.order_budget) keep their counts under the key these functions give.
"""
from __future__ import annotations

from sqlalchemy import select

from app.core.db import new_session
from app.models import Account

ZERODHA_PREFIX = "zerodha:"  # account ids cannot contain ':', so a user's key never names an account


def order_limit_key(account_id: str, broker_user_id: str | None) -> str:
    """The key of the account's order limits: its Zerodha user when known, else the account itself."""
    return f"{ZERODHA_PREFIX}{broker_user_id}" if broker_user_id else account_id


def order_limit_key_of(account_id: str) -> str:
    """The key for a stored account (read each time: a login may have just named its user)."""
    with new_session() as session:
        broker_user_id = session.scalar(select(Account.broker_user_id).where(Account.id == account_id))
    return order_limit_key(account_id, broker_user_id)


def accounts_counted_under(key: str) -> list[str]:
    """The service accounts whose orders count under `key`."""
    if not key.startswith(ZERODHA_PREFIX):
        return [key]
    with new_session() as session:
        return list(session.scalars(select(Account.id).where(
            Account.broker_user_id == key.removeprefix(ZERODHA_PREFIX)).order_by(Account.id)))


def describe_limit_key(key: str) -> str:
    """For people: "Zerodha account AB1234" or "account primary"."""
    if key.startswith(ZERODHA_PREFIX):
        return f"Zerodha account {key.removeprefix(ZERODHA_PREFIX)}"
    return f"account {key}"
