"""Maintenance queue: instrument refresh (daily, by beat) and housekeeping."""
from __future__ import annotations

import logging

from sqlalchemy import select

from app.accounts import credentials
from app.broker import kite_client
from app.db import session_scope
from app.instruments import store_instruments
from app.models import Account
from workers import app

log = logging.getLogger(__name__)


@app.task(name="workers.tasks.maintenance.refresh_instruments", acks_late=True)
def refresh_instruments(account_id: str | None = None) -> int:
    """Load the broker's instrument dump into the registry table; returns the row count."""
    with session_scope() as session:
        query = select(Account).where(Account.active.is_(True)).order_by(Account.id)
        if account_id:
            query = query.where(Account.id == account_id)
        account = session.scalars(query).first()
        if account is None:
            log.warning("instrument refresh skipped: no active account")
            return 0
        creds = credentials(account)
    rows = kite_client(creds).instruments()
    with session_scope() as session:
        count = store_instruments(session, rows)
    log.info("instruments refreshed", extra={"count": count})
    return count
