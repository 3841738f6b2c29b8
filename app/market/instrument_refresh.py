"""Keeping the instrument registry loaded without a person: when, and how often.

Kite publishes the instrument dump once a day, around 08:00 IST, and never
changes it during the day. So a registry loaded before the latest 08:00 IST is
stale, and is refreshed: when a worker starts, when an account is registered,
by beat every trading day at 08:15 IST, and once (per few minutes, across every
process) when an order names an instrument a stale registry does not know.
"""
from __future__ import annotations

import csv
import io
import logging
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts import credentials
from app.broker.client import kite_client
from app.core.db import session_scope
from app.market.instruments import registry, store_instruments
from app.models import Account, Instrument
from app.core.redis_client import get_redis
from app.core.task_client import send_task

log = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")
DUMP_PUBLISHED_AT = time(8, 0)  # IST
REFRESH_TASK = "workers.tasks.maintenance.refresh_instruments"
# One refresh at a time across processes; a loser waits for the winner and finds the registry fresh.
REFRESH_LOCK = "instruments:refresh:lock"
REFRESH_LOCK_TIMEOUT_S = 600
# An unknown symbol triggers at most one refresh per this interval, whichever process sees it.
MISS_REFRESH_KEY = "instruments:refresh:on-miss"
MISS_REFRESH_INTERVAL_S = 300


def latest_dump_time(now: datetime) -> datetime:
    """The latest 08:00 IST at or before `now` (an aware datetime)."""
    local = now.astimezone(IST)
    published = datetime.combine(local.date(), DUMP_PUBLISHED_AT, tzinfo=IST)
    if published > local:
        published -= timedelta(days=1)
    return published


def is_stale(loaded_at: datetime | None, now: datetime | None = None) -> bool:
    """True when the registry is empty or was loaded before the latest dump."""
    if loaded_at is None:
        return True
    if loaded_at.tzinfo is None:
        loaded_at = loaded_at.replace(tzinfo=timezone.utc)
    return loaded_at < latest_dump_time(now or datetime.now(timezone.utc))


def registry_state(session: Session) -> tuple[int, datetime | None]:
    """How many instruments are stored, and when they were loaded (None when empty)."""
    count, loaded_at = session.execute(
        select(func.count(Instrument.instrument_token), func.max(Instrument.updated_at))).one()
    if not count:
        return 0, None
    return count, loaded_at if loaded_at.tzinfo else loaded_at.replace(tzinfo=timezone.utc)


def refresh_from_broker(account_id: str | None = None) -> int:
    """Load the broker's instrument dump into the registry table now; returns the row count
    (0 when there is no active account to ask). One load at a time across processes: the table
    is replaced in one transaction, and two replacing it at once would collide."""
    with _refresh_lock():
        return _load(account_id)


def refresh_if_stale(account_id: str | None = None) -> int | None:
    """Refresh when the registry is empty or older than the latest dump; returns the count
    loaded, or None when it was fresh. Concurrent callers refresh once."""
    with _refresh_lock():
        with session_scope() as session:
            _count, loaded_at = registry_state(session)
        if not is_stale(loaded_at):
            log.debug("instrument registry is fresh", extra={"loaded_at": str(loaded_at)})
            return None
        return _load(account_id)


def _refresh_lock():
    return get_redis().lock(REFRESH_LOCK, timeout=REFRESH_LOCK_TIMEOUT_S, blocking_timeout=REFRESH_LOCK_TIMEOUT_S)


def _load(account_id: str | None) -> int:
    with session_scope() as session:
        query = select(Account).where(Account.active.is_(True), Account.access_token_enc.is_not(None))
        if account_id:
            query = query.where(Account.id == account_id)
        account = session.scalars(query.order_by(Account.id)).first()
        if account is None:
            log.info("instrument refresh skipped: no active account with a session")
            return 0
        creds = credentials(account)
    rows = fetch_dump(kite_client(creds))
    with session_scope() as session:
        count = store_instruments(session, rows)
    registry().invalidate()
    log.info("instruments refreshed", extra={"count": count, "account_id": creds.account_id})
    return count


def fetch_dump(kite) -> list[dict]:
    """The broker's whole instrument dump as kiteconnect's `instruments()` rows, but with the CSV's
    fields left as text for `normalise_row`: the client parses every expiry with dateutil, seconds of
    CPU for Kite's ~100,000 rows, where `date.fromisoformat` takes milliseconds."""
    raw = kite._get("market.instruments.all")
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return list(csv.DictReader(io.StringIO(text.strip())))


def refresh_for_unknown_symbol() -> bool:
    """An order named a symbol the registry lacks: refresh a stale registry once, rate-limited
    across processes. True when the registry was reloaded (the caller looks again)."""
    loaded = registry().loaded_at
    if not is_stale(loaded):
        return False
    if not get_redis().set(MISS_REFRESH_KEY, "1", nx=True, ex=MISS_REFRESH_INTERVAL_S):
        return False
    try:
        refresh_if_stale()
    except Exception:  # the order is refused as unknown; the refresh is retried by the next trigger
        log.warning("instrument refresh for an unknown symbol failed", exc_info=True)
        return False
    registry().invalidate()
    return True


def request_refresh() -> None:
    """Ask a worker to load a stale registry (an account or a session was just added, so the
    broker can now be asked). Workers also check at start, so a failed request loses nothing."""
    try:
        send_task(REFRESH_TASK, kwargs={"only_if_stale": True}, retry=False)
    except Exception as exc:
        log.warning("instrument refresh not requested: %s; a worker loads the registry when it starts",
                    f"{type(exc).__name__}: {exc}")
