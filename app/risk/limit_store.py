"""Each account's risk limits as stored (table account_limits): read, replace, show.

No row, or a null column, means no such limit. The checks that use them are app.risk.limits.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from app.accounts import get_account
from app.core.db import new_session, session_scope
from app.core.timestamps import iso
from app.models import Account, AccountLimits, utcnow

REJECT, KILL = "reject", "kill"
ON_BREACH = (REJECT, KILL)
ANY_UNDERLYING = "*"  # in max_lots_per_order: the limit for every underlying not named


@dataclass(frozen=True)
class Limits:
    max_lots_per_order: dict[str, int] | None = None
    max_order_value: Decimal | None = None
    max_open_orders: int | None = None
    max_daily_loss: Decimal | None = None
    on_breach: str = REJECT
    updated_at: datetime | None = None
    updated_by: str | None = None

    @property
    def any(self) -> bool:
        return bool(self.max_lots_per_order) or any(
            value is not None for value in (self.max_order_value, self.max_open_orders, self.max_daily_loss))

    def lots_limit(self, underlying: str) -> int | None:
        """The most lots of `underlying` one order may carry (the "*" entry for one not named)."""
        lots = self.max_lots_per_order or {}
        return lots.get(underlying, lots.get(ANY_UNDERLYING))

    def view(self) -> dict:
        return {"max_lots_per_order": dict(self.max_lots_per_order) if self.max_lots_per_order else None,
                "max_order_value": _number(self.max_order_value), "max_open_orders": self.max_open_orders,
                "max_daily_loss": _number(self.max_daily_loss), "on_breach": self.on_breach,
                "updated_at": iso(self.updated_at), "updated_by": self.updated_by}


NO_LIMITS = Limits()


def _number(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _limits(row: AccountLimits | None) -> Limits:
    if row is None:
        return NO_LIMITS
    return Limits(row.max_lots_per_order or None, row.max_order_value, row.max_open_orders, row.max_daily_loss,
                  row.on_breach, row.updated_at, row.updated_by)


def limits_of(account_id: str) -> Limits:
    """The account's limits (NO_LIMITS without a row, or for an unknown account)."""
    with new_session() as session:
        return _limits(session.get(AccountLimits, account_id))


def account_limits(account_id: str) -> Limits:
    """The account's limits; AccountNotFound for an unknown account (the API's 404)."""
    with new_session() as session:
        get_account(session, account_id)
        return _limits(session.get(AccountLimits, account_id))


def replace_limits(account_id: str, values: dict, updated_by: str | None) -> Limits:
    """Store `values` (the PUT body, loaded) as the account's whole set of limits: a limit left out
    is removed. AccountNotFound for an unknown account."""
    with session_scope() as session:
        get_account(session, account_id)
        row = session.get(AccountLimits, account_id)
        if row is None:
            row = AccountLimits(account_id=account_id)
            session.add(row)
        row.max_lots_per_order = values.get("max_lots_per_order") or None
        row.max_order_value = values.get("max_order_value")
        row.max_open_orders = values.get("max_open_orders")
        row.max_daily_loss = values.get("max_daily_loss")
        row.on_breach = values.get("on_breach") or REJECT
        row.updated_at = utcnow()
        row.updated_by = updated_by
        session.flush()
        return _limits(row)


def accounts_watching_daily_loss() -> list[str]:
    """Active accounts with a daily loss limit: those whose P&L the beat keeps fresh."""
    with new_session() as session:
        return list(session.scalars(
            select(AccountLimits.account_id).join(Account, Account.id == AccountLimits.account_id)
            .where(AccountLimits.max_daily_loss.is_not(None), Account.active.is_(True))
            .order_by(AccountLimits.account_id)))
