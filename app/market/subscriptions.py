"""Market-data subscriptions: stored in the database, applied live by the stream process.

The web process validates against the instrument registry, refuses what the
accounts cannot carry (Kite: MAX_WS_CONNECTIONS sockets × MAX_INSTRUMENTS_PER_WS
instruments per api key), and tells the stream over Redis (`stream:control`) so
the change applies within a second, without a restart.

Who may change what (`caller`: an admin key, or a key for some accounts; None: trusted code):
- a subscription pinned to an account is that account's: only its keys (and admin) see it, change
  its mode or pin, or delete it — any other key is refused, and told no account name;
- a shared one (no account) serves every account: any key may create it (the dashboard subscribes
  the chain on display so) or raise its mode; lowering, pinning or deleting it is for admin keys,
  since it would take data away from the other accounts' users.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Protocol

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


class NotPermitted(Exception):
    """The caller's key may not make this change; the message names no account."""


class Caller(Protocol):
    """Who asks (app.web.auth.Principal is one)."""
    accounts: frozenset[str]

    @property
    def is_admin(self) -> bool: ...

    def may_access(self, account_id: str) -> bool: ...


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


def subscribe(session: Session, tokens: list[int], mode: str, account_id: str | None = None,
              caller: Caller | None = None) -> Change:
    """Add or re-mode subscriptions (all or nothing); raises on unknown tokens, over capacity, or a
    change `caller` may not make (NotPermitted)."""
    mode = mode.upper()
    tokens = list(dict.fromkeys(int(t) for t in tokens))
    unknown = [t for t in tokens if registry().by_token(t) is None]
    if unknown:
        raise UnknownInstrument(unknown)
    if account_id is not None and session.get(Account, account_id) is None:
        raise UnknownAccount(account_id)

    existing = {s.instrument_token: s for s in session.scalars(
        select(Subscription).where(Subscription.instrument_token.in_(tokens)))}
    if caller is not None:
        _check_subscribe(caller, list(existing.values()), mode, account_id)
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


def unsubscribe(session: Session, token: int, caller: Caller | None = None) -> bool:
    sub = session.get(Subscription, int(token))
    if sub is None:
        return False
    if caller is not None and not caller.is_admin:
        if sub.account_id is None:
            raise NotPermitted(f"instrument {sub.instrument_token} is a shared subscription (it serves every "
                               "account): only an admin key may delete it")
        if not caller.may_access(sub.account_id):
            raise NotPermitted(_pinned_elsewhere([sub.instrument_token]))
    session.delete(sub)
    return True


def list_subscriptions(session: Session, caller: Caller | None = None) -> list[Subscription]:
    """Every subscription; to a key for some accounts, theirs and the shared ones."""
    query = select(Subscription).order_by(Subscription.instrument_token)
    if caller is not None and not caller.is_admin:
        query = query.where(Subscription.account_id.is_(None) | Subscription.account_id.in_(sorted(caller.accounts)))
    return list(session.scalars(query))


def _check_subscribe(caller: Caller, existing: list[Subscription], mode: str, account_id: str | None) -> None:
    """Refuse (NotPermitted) what `caller` may not do to these subscriptions; see the module's rules."""
    if caller.is_admin:
        return
    if account_id is not None and not caller.may_access(account_id):
        raise NotPermitted(f"this key may not pin subscriptions to account {account_id!r}")
    elsewhere = [s.instrument_token for s in existing
                 if s.account_id is not None and not caller.may_access(s.account_id)]
    if elsewhere:
        raise NotPermitted(_pinned_elsewhere(elsewhere))
    shared = [s for s in existing if s.account_id is None]
    pinned = [s.instrument_token for s in shared if account_id is not None]
    if pinned:
        raise NotPermitted(f"instruments {pinned[:10]} are shared subscriptions (they serve every account): "
                           "only an admin key may pin them to an account")
    lowered = [s.instrument_token for s in shared if MODES.index(mode) < MODES.index(s.requested_mode.upper())]
    if lowered:
        raise NotPermitted(f"instruments {lowered[:10]} are shared subscriptions in a fuller mode than {mode}: "
                           "only an admin key may lower them (they serve every account)")


def _pinned_elsewhere(tokens: list[int]) -> str:
    return f"instruments {tokens[:10]} are pinned to an account this key may not use"


def notify_stream() -> None:
    """Wake the stream processes (after commit); they reload subscriptions from the database."""
    try:
        get_redis().publish(CONTROL_CHANNEL, json.dumps({"op": "subscriptions_changed"}))
    except Exception:  # the stream also re-reads periodically, so a lost wake-up only delays
        log.warning("stream not notified of a subscription change", exc_info=True)
