"""Webhook delivery tunables (read from the environment by app.config)."""
from __future__ import annotations

from dataclasses import dataclass

from app.core.config import get_settings


@dataclass(frozen=True)
class WebhookSettings:
    retry_base_s: float  # WEBHOOK_RETRY_BASE_S: first retry after this, doubling each time
    retry_cap_s: float  # WEBHOOK_RETRY_CAP_S
    max_attempts: int  # WEBHOOK_MAX_ATTEMPTS per delivery round (a redelivery starts a new round)
    timeout_s: float  # WEBHOOK_TIMEOUT_S: connect and read timeout of one attempt
    allow_private: bool  # WEBHOOK_ALLOW_PRIVATE: loopback/private receivers (tests, on-prem)


def webhook_settings() -> WebhookSettings:
    settings = get_settings()
    return WebhookSettings(
        retry_base_s=settings.webhook_retry_base_s,
        retry_cap_s=settings.webhook_retry_cap_s,
        max_attempts=settings.webhook_max_attempts,
        timeout_s=settings.webhook_timeout_s,
        allow_private=settings.webhook_allow_private,
    )


def retry_delay(settings: WebhookSettings, attempt: int) -> float:
    """Exponential backoff after the `attempt`-th failure of a round (1-based)."""
    return min(settings.retry_cap_s, settings.retry_base_s * (2 ** (attempt - 1)))
