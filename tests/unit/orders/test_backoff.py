"""The retry schedule of an order: exponential backoff with jitter, capped (from the settings)."""
from __future__ import annotations

from app.orders.attempts import backoff_s


def test_backoff_grows_with_jitter_and_respects_the_cap():
    from app.core.config import get_settings

    settings = get_settings()
    for attempt in range(1, 12):
        delays = [backoff_s(attempt, settings) for _ in range(50)]
        ceiling = min(settings.order_retry_cap_s, settings.order_retry_base_s * 2 ** (attempt - 1))
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
