"""Market-data subscriptions: stored in the database, applied live by the stream process.

The web process validates against the instrument registry, refuses what the
accounts cannot carry (Kite: MAX_WS_CONNECTIONS sockets × MAX_INSTRUMENTS_PER_WS
instruments per api key), and tells the stream over Redis (`stream:control`) so
the change applies within a second, without a restart.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.market.instruments import registry
from app.models import Account, Subscription
from app.core.redis_client import get_redis

log = logging.getLogger(__name__)

MODES = ("LTP", "QUOTE", "FULL")
CONTROL_CHANNEL = "stream:control"


class UnknownInstrument(Exception):
    def __init__(self, tokens: list[int]) -> None:
        super().__init__(f"not in the instrument registry: {tokens[:10]}")
        self.tokens = tokens


class OverCapacity(Exception):
    def __init__(self, requested: int, capacity: int, scope: str) -> None:
        super().__init__(f"{requested} subscriptions requested but {scope} can carry {capacity}")
        self.requested = requested
        self.capacity = capacity


class UnknownAccount(Exception):
    pass


@dataclass(frozen=True)
class Change:
    created: int
    updated: int


def _streaming_accounts(session: Session) -> int:
    """Accounts that can hold ticker connections: active, with an access token."""
    return session.scalar(select(func.count()).select_from(Account).where(
        Account.active.is_(True), Account.access_token_enc.is_not(None))) or 0


def capacity(session: Session, account_id: str | None = None) -> int:
    settings = get_settings()
    per_account = settings.max_ws_connections * settings.max_instruments_per_ws
    return per_account if account_id else per_account * _streaming_accounts(session)


def subscribe(session: Session, tokens: list[int], mode: str, account_id: str | None = None) -> Change:
    """Add or re-mode subscriptions (all or nothing); raises on unknown tokens or over capacity."""
    mode = mode.upper()
    tokens = list(dict.fromkeys(int(t) for t in tokens))
    unknown = [t for t in tokens if registry().by_token(t) is None]
    if unknown:
        raise UnknownInstrument(unknown)
    if account_id is not None and session.get(Account, account_id) is None:
        raise UnknownAccount(account_id)

    existing = {s.instrument_token: s for s in session.scalars(
        select(Subscription).where(Subscription.instrument_token.in_(tokens)))}
    new = [t for t in tokens if t not in existing]
    if new:
        total = (session.scalar(select(func.count()).select_from(Subscription)) or 0) + len(new)
        limit = capacity(session)
        if total > limit:
            raise OverCapacity(total, limit, "the streaming accounts")
        if account_id is not None:
            pinned = (session.scalar(select(func.count()).select_from(Subscription).where(
                Subscription.account_id == account_id)) or 0) + len(new)
            if pinned > capacity(session, account_id):
                raise OverCapacity(pinned, capacity(session, account_id), f"account {account_id}")
    for token in new:
        session.add(Subscription(instrument_token=token, requested_mode=mode, account_id=account_id))
    updated = 0
    for sub in existing.values():
        if sub.requested_mode != mode or sub.account_id != account_id:
            sub.requested_mode, sub.account_id = mode, account_id
            updated += 1
    return Change(created=len(new), updated=updated)


def unsubscribe(session: Session, token: int) -> bool:
    sub = session.get(Subscription, int(token))
    if sub is None:
        return False
    session.delete(sub)
    return True


def list_subscriptions(session: Session) -> list[Subscription]:
    return list(session.scalars(select(Subscription).order_by(Subscription.instrument_token)))


def notify_stream() -> None:
    """Wake the stream processes (after commit); they reload subscriptions from the database."""
    try:
        get_redis().publish(CONTROL_CHANNEL, json.dumps({"op": "subscriptions_changed"}))
    except Exception:  # the stream also re-reads periodically, so a lost wake-up only delays
        log.warning("stream not notified of a subscription change", exc_info=True)
