"""Webhook delivery on the `webhooks` queue: one attempt per run, retried with backoff."""
from __future__ import annotations

import logging

from app.webhooks import delivery
from workers.celery_app import celery_app

log = logging.getLogger(__name__)


@celery_app.task(bind=True, name="workers.tasks.webhooks.deliver_webhook", max_retries=None, acks_late=True)
def deliver_webhook(self, delivery_id: str, round_start: int = 0) -> str:
    result = delivery.attempt(delivery_id, round_start)
    if result.retry_in is not None:
        # The delivery row keeps the count; Celery only schedules the next attempt.
        raise self.retry(countdown=result.retry_in)
    return result.status


@celery_app.task(name="workers.tasks.webhooks.requeue_stranded_deliveries", acks_late=True, ignore_result=True)
def requeue_stranded_deliveries() -> int:
    """Beat: give stranded PENDING deliveries a new round (nothing is lost, invariant 3)."""
    found = delivery.stranded()
    for delivery_id, attempts in found:
        delivery.enqueue(delivery_id, round_start=attempts)
    if found:
        log.info("requeued %d stranded webhook deliver%s", len(found), "y" if len(found) == 1 else "ies",
                 extra={"delivery_ids": [delivery_id for delivery_id, _ in found]})
    else:
        log.debug("no stranded webhook delivery")
    return len(found)
