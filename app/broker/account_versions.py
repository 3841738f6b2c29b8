"""When an account's broker settings change (egress, access token), every process's cached client
of that account must be rebuilt — in the workers too, not only in the process that made the change.

Each change replaces the account's version token in Redis once its transaction has committed; a
cached client built under another token is stale. An order sent through a stale route would be
refused by Kite for good (a rejection is final), so the check is made at every use: one Redis GET.
"""
from __future__ import annotations

import logging
import uuid

from sqlalchemy import event

from app.core.redis_client import get_redis

log = logging.getLogger(__name__)

UNCHANGED = "-"  # the token of an account never changed since Redis was last emptied


def _key(account_id: str) -> str:
    return f"accounts:version:{account_id}"


def current(account_id: str) -> str | None:
    """The account's version token; None when Redis does not answer (the client cache's TTL then
    bounds how long a change can go unseen)."""
    try:
        token = get_redis().get(_key(account_id))
    except Exception:
        return None
    return token.decode() if token else UNCHANGED


def changed(session, account_id: str) -> None:
    """Call inside the transaction that changes the account: the token moves after the commit."""

    def replace_token(_session) -> None:
        try:
            get_redis().set(_key(account_id), uuid.uuid4().hex)
        except Exception:  # other processes' clients catch up within the client cache's TTL
            log.warning("account version not replaced", exc_info=True, extra={"account_id": account_id})

    event.listen(session, "after_commit", replace_token, once=True)
