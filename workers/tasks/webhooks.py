"""Webhook delivery on the `webhooks` queue: one attempt per run, retried with backoff."""
from __future__ import annotations

from workers import app
from app.webhooks import delivery


@app.task(bind=True, name="workers.tasks.webhooks.deliver_webhook", max_retries=None, acks_late=True)
def deliver_webhook(self, delivery_id: str, round_start: int = 0) -> str:
    result = delivery.attempt(delivery_id, round_start)
    if result.retry_in is not None:
        # The delivery row keeps the count; Celery only schedules the next attempt.
        raise self.retry(countdown=result.retry_in)
    return result.status
