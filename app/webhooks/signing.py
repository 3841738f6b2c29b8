"""The signature of a delivery: HMAC-SHA256 of "timestamp.body" with the webhook's secret.

Receivers verify ``X-Webhook-Signature: sha256=<hex>`` over the exact body bytes
and reject old ``X-Webhook-Timestamp`` values (replays); ``X-Webhook-Id`` is
the delivery id, stable across retries, for de-duplication.

The secret itself is not sent: anyone who saw one request (a plain-http receiver, a proxy
log) could sign requests of their own. A webhook registered with ``legacy_secret_header``
still gets it in ``X-Webhook-Secret``, for receivers written for the old ticker service.
"""
from __future__ import annotations

import hashlib
import hmac


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, presented: str) -> bool:
    return hmac.compare_digest(signature(secret, timestamp, body), presented or "")


def delivery_headers(delivery_id: str, secret: str, timestamp: str, body: bytes,
                     legacy_secret_header: bool = False) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ticker-service-webhooks/1.0",
        "X-Webhook-Id": delivery_id,
        "X-Webhook-Timestamp": timestamp,
        "X-Webhook-Signature": signature(secret, timestamp, body),
    }
    if legacy_secret_header:
        headers["X-Webhook-Secret"] = secret
    return headers
