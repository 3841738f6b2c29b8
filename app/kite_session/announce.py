"""What a change of an account's Kite session tells the world.

Expired: a `session` message on the account's order stream, the webhook event
`account.session_expired`, and a wake-up of the stream processes (they hand the account's
instruments to the other accounts). The metric and the alert read the stored state at scrape
time (app.orders.metrics), so nothing is counted here.
Started (a login): a `session` message, the wake-up, and the orders held meanwhile go out.
Never raises: the state is already stored, and every consumer can read it back.
"""
from __future__ import annotations

import logging

from app.core.redis_client import get_redis
from app.market.subscriptions import CONTROL_CHANNEL
from app.orders.updates import publish
from app.webhooks import events as webhook_events

log = logging.getLogger(__name__)

SESSION_MESSAGE = "session"
EXPIRED_EVENT = "account.session_expired"


def session_expired(account_id: str, view: dict) -> None:
    data = {"account_id": account_id, **view}
    publish(account_id, data, SESSION_MESSAGE)
    webhook_events.account_event(account_id, EXPIRED_EVENT, data, subject=f"session:{account_id}:{view['expired_at']}")
    _wake_stream(account_id)


def session_started(account_id: str, view: dict) -> int:
    """Announce a login and send the orders held while the session was dead; how many went out."""
    from app.kite_session.held_orders import release

    publish(account_id, {"account_id": account_id, **view}, SESSION_MESSAGE)
    _wake_stream(account_id)
    try:
        return release(account_id)
    except Exception:  # the reconciler re-enqueues QUEUED orders of a live account in time
        log.warning("held orders not released; the reconciler will send them", exc_info=True,
                    extra={"account_id": account_id})
        return 0


def _wake_stream(account_id: str) -> None:
    try:
        get_redis().publish(CONTROL_CHANNEL, f"session:{account_id}")
    except Exception:
        log.debug("stream not woken (it re-reads the accounts every few seconds)", exc_info=True)
