"""Delivering one webhook event: create the rows, enqueue, POST with a signature, log every attempt.

A delivery runs in rounds: a round is up to WEBHOOK_MAX_ATTEMPTS attempts with
exponential backoff (the Celery task retries); after the last one the delivery
is FAILED and stays visible; a redelivery starts a new round. The HTTP call is
made outside any database transaction, to an address checked just before (url_safety) and
pinned for the connection (pinned.py).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import requests

from app.core.cluster_metrics import ClusterCounter
from app.core.crypto import decrypt
from app.core.db import session_scope
from app.core.task_client import send_untracked
from app.models import WebhookAttempt, WebhookDelivery, utcnow
from app.core.timestamps import iso
from app.webhooks import pinned, registry
from app.webhooks.settings import WebhookSettings, retry_delay, webhook_settings
from app.webhooks.signing import delivery_headers
from app.webhooks.url_safety import UnsafeUrl, resolve_public

log = logging.getLogger(__name__)

# Counted in the worker, exported by the web process's /metrics (app.core.cluster_metrics); every
# outcome counted in attempt() below is exported at 0 until it first happens, so a fresh
# deployment has the series (the WebhookDeliveriesFailing alert's `status="failed"` among them).
DELIVERY_OUTCOMES = ("delivered", "retrying", "failed")
DELIVERIES = ClusterCounter("webhook_deliveries_total",
                            "Webhook delivery outcomes (retrying: an attempt failed, more follow)", ("status",),
                            series=[(outcome,) for outcome in DELIVERY_OUTCOMES])
DELIVER_TASK = "workers.tasks.webhooks.deliver_webhook"
MAX_ERROR_CHARS = 500


class DeliveryInFlight(RuntimeError):
    """A redelivery was asked for a delivery that is still being attempted."""


@dataclass
class AttemptResult:
    status: str  # DELIVERED | PENDING (retry later) | FAILED
    retry_in: float | None = None
    status_code: int | None = None
    error: str | None = None


def event_body(event: str, account_id: str, data: dict) -> dict:
    return {"event": event, "account_id": account_id, "data": data,
            "timestamp": iso(datetime.now(timezone.utc))}


def create_deliveries(session, account_id: str, event: str, data: dict) -> list[str]:
    """One PENDING delivery per active webhook of the account subscribed to the event."""
    ids = []
    for webhook in registry.subscribed_webhooks(account_id, event):
        delivery = WebhookDelivery(webhook_id=webhook.id, event=event,
                                   payload=json.loads(json.dumps(event_body(event, account_id, data), default=str)))
        session.add(delivery)
        session.flush()
        ids.append(delivery.id)
    return ids


def enqueue(delivery_id: str, round_start: int = 0) -> None:
    send_untracked(DELIVER_TASK, args=[delivery_id, round_start], queue="webhooks")


def stranded(settings: WebhookSettings | None = None) -> list[tuple[str, int]]:
    """PENDING deliveries nothing is working on: never enqueued (Redis was down when the
    event fired) or their retry lost. Quiet for longer than any scheduled retry waits."""
    from sqlalchemy import func, select

    settings = settings or webhook_settings()
    quiet_since = utcnow() - timedelta(seconds=2 * settings.retry_cap_s + 60)
    with session_scope() as session:
        last_attempt = (select(WebhookAttempt.delivery_id, func.max(WebhookAttempt.at).label("at"))
                        .group_by(WebhookAttempt.delivery_id).subquery())
        rows = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.attempts)
            .outerjoin(last_attempt, last_attempt.c.delivery_id == WebhookDelivery.id)
            .where(WebhookDelivery.status == "PENDING",
                   func.coalesce(last_attempt.c.at, WebhookDelivery.created_at) < quiet_since)).all()
    return [(row.id, row.attempts) for row in rows]


def redeliver(delivery_id: str) -> dict:
    """Start a new round of attempts for a delivery (normally a FAILED one)."""
    with session_scope() as session:
        delivery = registry.get_delivery(session, delivery_id)
        if delivery.status == "PENDING":
            raise DeliveryInFlight(delivery_id)
        delivery.status, delivery.last_error, delivery.delivered_at = "PENDING", None, None
        round_start = delivery.attempts
        view = registry.delivery_view(delivery)
    enqueue(delivery_id, round_start)
    return view


def attempt(delivery_id: str, round_start: int = 0, settings: WebhookSettings | None = None) -> AttemptResult:
    """Make the next attempt of a delivery and record it."""
    settings = settings or webhook_settings()
    with session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return AttemptResult("FAILED", error="no such delivery")
        if delivery.status != "PENDING":  # delivered already (a duplicate task) or given up
            return AttemptResult(delivery.status)
        webhook = registry.get_webhook(session, delivery.webhook_id)
        if not webhook.active:
            _finish(delivery, "FAILED", "the webhook was deleted")
            return AttemptResult("FAILED", error="the webhook was deleted")
        url, secret, payload = webhook.url, decrypt(webhook.secret_enc), delivery.payload
        legacy_secret_header = bool(webhook.legacy_secret_header)
        number = delivery.attempts + 1

    started = time.perf_counter()
    status_code, error, retryable = _post(delivery_id, url, secret, legacy_secret_header, payload, settings)
    duration_ms = (time.perf_counter() - started) * 1000

    with session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        delivery.attempts = number
        delivery.last_status_code = status_code
        session.add(WebhookAttempt(delivery_id=delivery_id, attempt=number, status_code=status_code,
                                   error=error, duration_ms=duration_ms))
        if error is None:
            _finish(delivery, "DELIVERED", None)
            DELIVERIES.inc(status="delivered")
            return AttemptResult("DELIVERED", status_code=status_code)
        in_round = number - round_start
        if not retryable or in_round >= settings.max_attempts:
            _finish(delivery, "FAILED", error)
            DELIVERIES.inc(status="failed")
            return AttemptResult("FAILED", status_code=status_code, error=error)
        delivery.last_error = error
        DELIVERIES.inc(status="retrying")
        return AttemptResult("PENDING", retry_in=retry_delay(settings, in_round), status_code=status_code, error=error)


def _finish(delivery: WebhookDelivery, status: str, error: str | None) -> None:
    delivery.status = status
    delivery.last_error = error
    if status == "DELIVERED":
        delivery.delivered_at = utcnow()


def _post(delivery_id: str, url: str, secret: str, legacy_secret_header: bool, payload: dict,
          settings: WebhookSettings) -> tuple[int | None, str | None, bool]:
    """(status code, error or None, whether a retry may help). No error text holds the secret."""
    try:
        addresses = resolve_public(url, settings.allow_private)
    except UnsafeUrl as exc:  # checked after DNS: a name may point somewhere private since registration
        retryable = str(exc).startswith("cannot resolve")
        return None, f"refused before sending: {exc}", retryable
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    timestamp = str(int(time.time()))
    headers = delivery_headers(delivery_id, secret, timestamp, body, legacy_secret_header)
    try:
        # To the checked addresses only, and no redirects: either could lead somewhere the check refuses.
        response = pinned.post(url, addresses, body, headers, settings.timeout_s)
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS], True
    if 200 <= response.status_code < 300:
        return response.status_code, None, True
    return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"[:MAX_ERROR_CHARS], True
