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
from typing import NamedTuple, Protocol

from sqlalchemy import BigInteger, any_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.market.instruments import registry
from app.models import Account, Subscription, utcnow
from app.core.redis_client import get_redis

log = logging.getLogger(__name__)

MODES = ("LTP", "QUOTE", "FULL")
CONTROL_CHANNEL = "stream:control"
SQLITE_IN_CHUNK = 900  # tokens per IN list on SQLite: under its oldest bound-variable limit (999)
READ_ALL_FROM = 2000  # tokens in one request from which the existing ones are found by reading them all


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
    change `caller` may not make (NotPermitted).

    A few statements whatever the count (a whole account set's 27,000 at once): the existing ones
    read as plain columns in one query, the new ones in one INSERT, the re-moded ones in one UPDATE
    (on SQLite, one per 900 tokens)."""
    mode = mode.upper()
    tokens = list(dict.fromkeys(int(t) for t in tokens))
    unknown = registry().missing(tokens)
    if unknown:
        raise UnknownInstrument(unknown)
    if account_id is not None and session.get(Account, account_id) is None:
        raise UnknownAccount(account_id)

    existing = _existing(session, tokens)
    if caller is not None:
        _check_subscribe(caller, existing, mode, account_id)
    known = {s.instrument_token for s in existing}
    new = [t for t in tokens if t not in known]
    if new:
        _check_capacity(session, len(new), account_id)
        _insert(session, new, mode, account_id)
    changed = [s.instrument_token for s in existing if s.requested_mode != mode or s.account_id != account_id]
    for among in _among(session, changed):
        session.execute(update(Subscription).where(among)
                        .values(requested_mode=mode, account_id=account_id, updated_at=utcnow())
                        .execution_options(synchronize_session=False))
    return Change(created=len(new), updated=len(changed))


# PostgreSQL: one statement with the tokens as one array parameter (27,000 rows in a few hundred ms,
# several times faster than a multi-row INSERT of them).
_INSERT_UNNESTED = text(
    f"INSERT INTO {Subscription.__tablename__} (instrument_token, requested_mode, account_id, created_at, "
    "updated_at) SELECT token, :mode, :account_id, :now, :now FROM unnest(CAST(:tokens AS BIGINT[])) AS token"
).bindparams(bindparam("now", type_=Subscription.__table__.c.created_at.type))


def _insert(session: Session, tokens: list[int], mode: str, account_id: str | None) -> None:
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_INSERT_UNNESTED, {"tokens": tokens, "mode": mode, "account_id": account_id, "now": now})
        return
    session.execute(insert(Subscription), [{"instrument_token": t, "requested_mode": mode, "account_id": account_id,
                                            "created_at": now, "updated_at": now} for t in tokens])


class Stored(NamedTuple):
    instrument_token: int
    requested_mode: str
    account_id: str | None


def _existing(session: Session, tokens: list[int]) -> list[Stored]:
    """The stored subscriptions among `tokens`. For a large request, every subscription (the table holds
    at most the accounts' capacity) filtered here: cheaper than sending the database thousands of tokens
    to look up."""
    query = select(Subscription.instrument_token, Subscription.requested_mode, Subscription.account_id)
    if len(tokens) >= READ_ALL_FROM:
        wanted = set(tokens)
        return [Stored._make(row) for row in session.execute(query).tuples() if row[0] in wanted]
    return [Stored._make(row) for among in _among(session, tokens)
            for row in session.execute(query.where(among)).tuples()]


def _among(session: Session, tokens: list[int]):
    """WHERE clauses that together cover `tokens`: on PostgreSQL one `= ANY(array)`, a single parameter
    whatever the count; elsewhere IN lists under SQLite's bound-variable limit (999 before 3.32)."""
    if not tokens:
        return
    if session.get_bind().dialect.name == "postgresql":
        yield Subscription.instrument_token == any_(bindparam("tokens", tokens, type_=ARRAY(BigInteger)))
        return
    for start in range(0, len(tokens), SQLITE_IN_CHUNK):
        yield Subscription.instrument_token.in_(tokens[start:start + SQLITE_IN_CHUNK])


def _check_capacity(session: Session, adding: int, account_id: str | None) -> None:
    total = (session.scalar(select(func.count()).select_from(Subscription)) or 0) + adding
    limit = capacity(session)
    if total > limit:
        raise OverCapacity(total, limit, "the streaming accounts")
    if account_id is not None:
        pinned = (session.scalar(select(func.count()).select_from(Subscription).where(
            Subscription.account_id == account_id)) or 0) + adding
        if pinned > capacity(session, account_id):
            raise OverCapacity(pinned, capacity(session, account_id), f"account {account_id}")


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


def _check_subscribe(caller: Caller, existing: list[Stored], mode: str, account_id: str | None) -> None:
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
