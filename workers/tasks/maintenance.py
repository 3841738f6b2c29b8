"""Maintenance queue: instrument refresh (at worker start, on registration, daily by beat) and the Kite
sessions' daily expiry (beat)."""
from __future__ import annotations

from app.kite_session import held_orders, state as kite_sessions
from app.market import instrument_refresh as instrument_loading
from workers.celery_app import celery_app


@celery_app.task(name=instrument_loading.REFRESH_TASK, acks_late=True)
def refresh_instruments(account_id: str | None = None, only_if_stale: bool = False) -> int | None:
    """Load the broker's instrument dump; with `only_if_stale`, only when the registry is empty
    or older than the latest 08:00 IST dump. Returns the row count (None when it was fresh)."""
    if only_if_stale:
        return instrument_loading.refresh_if_stale(account_id)
    return instrument_loading.refresh_from_broker(account_id)


@celery_app.task(name="workers.tasks.maintenance.check_kite_sessions", acks_late=True, ignore_result=True)
def check_kite_sessions() -> dict:
    """Mark the sessions whose 06:00 IST has passed (so the alert, the webhook and the stream act
    before any order fails) and cancel held orders whose own expiry passed."""
    return {"expired": kite_sessions.sweep_passed_expiries(), "lapsed_orders": held_orders.cancel_lapsed()}
