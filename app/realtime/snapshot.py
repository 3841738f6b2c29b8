"""The first message of an order socket: the non-final orders and the current sequence numbers."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from app.core.db import session_scope
from app.models import Account, Order
from app.core.timestamps import iso
from app.orders.states import FINAL
from app.orders.view import order_view

SNAPSHOT_LIMIT = 1000  # the newest open orders; a client wanting more pages the REST API


def current_seqs(redis, account_ids: list[str]) -> dict[str, int]:
    if not account_ids:
        return {}
    values = redis.mget([f"orders:seq:{a}" for a in account_ids])
    return {a: int(v or 0) for a, v in zip(account_ids, values)}


def order_snapshot(redis, account_id: str | None) -> dict:
    """`account_id=None` is the admin view of every account.

    The sequence numbers are read BEFORE the orders: every update with a seq up to
    them was committed before it was published, so the orders include it.
    """
    # No Redis call while a database connection is held: under gevent a call yields, and
    # a thousand sockets connecting at once would then hold the whole pool.
    if account_id is None:
        with session_scope() as session:
            accounts = list(session.scalars(select(Account.id).order_by(Account.id)))
    else:
        accounts = [account_id]
    seqs = current_seqs(redis, accounts)
    with session_scope() as session:
        query = select(Order).where(Order.status.not_in(FINAL))
        if account_id is not None:
            query = query.where(Order.account_id == account_id)
        orders = session.scalars(query.order_by(Order.created_at.desc()).limit(SNAPSHOT_LIMIT)).all()
        records = [order_view(o, with_events=False) for o in reversed(orders)]
    return {"type": "snapshot", "account_id": account_id or "*", "orders": records,
            "seq": seqs.get(account_id, 0) if account_id is not None else seqs,
            "timestamp": iso(datetime.now(timezone.utc))}
