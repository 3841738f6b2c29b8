"""Which webhooks an account has, without a database query for every order update.

Every order transition asks (web and workers, many times a second under load), while
webhooks change rarely. Each process keeps an account's active webhooks next to the
account's webhook token in Redis; every registration or deletion replaces the token once
its transaction has committed, and an entry whose token no longer matches is read again.
Entries are also read again after MAX_AGE_S, in case a token write was lost with Redis.
Reading the token before the rows means a change racing a refresh is seen on the next call.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import event, select

from app.core.db import new_session
from app.models import Webhook
from app.core.redis_client import get_redis

log = logging.getLogger(__name__)

MAX_AGE_S = 30.0


@dataclass(frozen=True)
class Subscription:
    id: str
    events: tuple[str, ...]


_cache: dict[str, tuple[bytes | None, float, list[Subscription]]] = {}
_lock = threading.Lock()


def _token_key(account_id: str) -> str:
    return f"webhooks:token:{account_id}"


def _read(account_id: str) -> list[Subscription]:
    with new_session() as session:
        rows = session.execute(select(Webhook.id, Webhook.events)
                               .where(Webhook.account_id == account_id, Webhook.active.is_(True)))
        return [Subscription(webhook_id, tuple(events or ())) for webhook_id, events in rows]


def active(account_id: str) -> list[Subscription]:
    """The account's active webhooks: from this process's cache while the account's token is unchanged."""
    try:
        token = get_redis().get(_token_key(account_id))
    except Exception:  # no Redis: no way to know the cache is current, so read
        return _read(account_id)
    cached = _cache.get(account_id)
    if cached and cached[0] == token and time.monotonic() - cached[1] < MAX_AGE_S:
        return cached[2]
    subscriptions = _read(account_id)
    with _lock:
        _cache[account_id] = (token, time.monotonic(), subscriptions)
    return subscriptions


def changed(session, account_id: str) -> None:
    """Call inside the transaction that registers or deletes a webhook: the token moves after the commit."""

    def replace_token(_session) -> None:
        try:
            get_redis().set(_token_key(account_id), uuid.uuid4().hex)
        except Exception:  # caches catch up within MAX_AGE_S
            log.warning("webhook token not replaced", exc_info=True, extra={"account_id": account_id})

    event.listen(session, "after_commit", replace_token, once=True)
