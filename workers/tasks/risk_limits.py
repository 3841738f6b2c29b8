"""Maintenance queue: the daily P&L of the accounts with a daily loss limit, kept fresh by beat so that
intake reads it from Redis instead of asking the broker per order (app.risk.daily_loss)."""
from __future__ import annotations

import logging

from app.risk import daily_loss
from workers.celery_app import celery_app

log = logging.getLogger(__name__)

REFRESH_TASK = "workers.tasks.risk_limits.refresh_daily_pnl"


@celery_app.task(name=REFRESH_TASK, acks_late=True, ignore_result=True)
def refresh_daily_pnl() -> dict:
    """Refresh every watched account's figure; a breach with `on_breach: "kill"` starts the kill switch
    (once a day). Says so at INFO only when a limit is breached."""
    result = daily_loss.refresh_watched()
    if result["breached"]:
        log.info("daily loss limits reached", extra={"accounts": result["breached"]})
    return result
