"""Webhook delivery tunables, read from the environment in this one place."""
from __future__ import annotations

import os
from dataclasses import dataclass

from app.config import load_settings


def _number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class WebhookSettings:
    retry_base_s: float  # WEBHOOK_RETRY_BASE_S: first retry after this, doubling each time
    retry_cap_s: float  # WEBHOOK_RETRY_CAP_S
    max_attempts: int  # WEBHOOK_MAX_ATTEMPTS per delivery round (a redelivery starts a new round)
    timeout_s: float  # WEBHOOK_TIMEOUT_S: connect and read timeout of one attempt
    allow_private: bool  # WEBHOOK_ALLOW_PRIVATE: loopback/private receivers (tests, on-prem)


def webhook_settings() -> WebhookSettings:
    return WebhookSettings(
        retry_base_s=_number("WEBHOOK_RETRY_BASE_S", 1.0),
        retry_cap_s=_number("WEBHOOK_RETRY_CAP_S", 300.0),
        max_attempts=max(1, int(_number("WEBHOOK_MAX_ATTEMPTS", 5))),
        timeout_s=_number("WEBHOOK_TIMEOUT_S", 5.0),
        allow_private=load_settings().webhook_allow_private,
    )


def retry_delay(settings: WebhookSettings, attempt: int) -> float:
    """Exponential backoff after the `attempt`-th failure of a round (1-based)."""
    return min(settings.retry_cap_s, settings.retry_base_s * (2 ** (attempt - 1)))
