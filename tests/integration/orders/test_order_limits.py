"""Rate limiter, circuit breaker and the redelivery budget, against the real Redis (failure
classification and the backoff schedule: tests/unit)."""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.broker.circuit_breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from app.broker.rate_limit import OrderRateLimiter


@pytest.fixture()
def account_id():
    return f"acct-{uuid.uuid4().hex[:8]}"


def test_bursts_go_at_once_and_no_window_holds_more_than_ten(account_id):
    limiter = OrderRateLimiter(per_second=10, per_minute=200)
    with ThreadPoolExecutor(8) as pool:
        reservations = list(pool.map(lambda _: limiter.reserve(account_id, max_wait_s=5), range(30)))
    assert all(r.granted for r in reservations)
    slots = sorted(r.slot_at for r in reservations)
    waits = sorted(r.wait_s for r in reservations)
    # a burst of ten needs no waiting (a 4-leg batch goes out together)
    assert waits[9] < 0.05
    # any window of Kite's second (whatever its alignment) holds at most 10 send slots
    assert max(sum(1 for s in slots if t <= s < t + 1.0) for t in slots) <= 10
    assert max(sum(1 for s in slots if t - 1.0 < s <= t) for t in slots) <= 10
    # everyone was served in about 2 windows, nobody was refused
    assert 1.9 < waits[-1] < 2.3


def test_minute_limit_defers_instead_of_refusing(account_id):
    limiter = OrderRateLimiter(per_second=1000, per_minute=5)
    granted = [limiter.reserve(account_id, max_wait_s=1) for _ in range(5)]
    assert all(r.granted for r in granted)
    refused = limiter.reserve(account_id, max_wait_s=1)
    assert not refused.granted and 55 < refused.wait_s <= 61
    # modify/cancel calls do not count against the placement minute
    assert limiter.reserve(account_id, placement=False, max_wait_s=1).granted
    limiter.reset(account_id)
    assert limiter.reserve(account_id, max_wait_s=1).granted


def test_circuit_breaker_opens_probes_and_closes(account_id):
    breaker = CircuitBreaker(threshold=3, cooldown_s=0.3, probe_ttl_s=5)
    for _ in range(2):
        breaker.record_failure(account_id)
    assert breaker.allow(account_id).allowed and breaker.state(account_id) == CLOSED
    breaker.record_failure(account_id)
    assert breaker.state(account_id) == OPEN
    refused = breaker.allow(account_id)
    assert not refused.allowed and 0 < refused.retry_after_s <= 0.3
    time.sleep(0.35)
    first, second = breaker.allow(account_id), breaker.allow(account_id)
    assert first.allowed and first.state == HALF_OPEN
    assert not second.allowed  # one probe at a time
    breaker.record_failure(account_id)  # the probe failed: open again
    assert breaker.state(account_id) == OPEN
    time.sleep(0.35)
    assert breaker.allow(account_id).allowed
    breaker.record_success(account_id)
    assert breaker.state(account_id) == CLOSED and breaker.allow(account_id).allowed


def test_circuit_breaker_gauge_on_metrics(client, accounts):
    from app.broker.circuit_breaker import order_circuit_breaker

    breaker = order_circuit_breaker()
    try:
        for _ in range(breaker.threshold):
            breaker.record_failure("other")
        text = client.get("/metrics").get_data(as_text=True)
        assert 'circuit_breaker_state{account_id="other"} 2.0' in text
        assert 'circuit_breaker_state{account_id="primary"} 0.0' in text
        assert "order_execution_duration_seconds_bucket" in text
        assert "order_retries_total" in text and "order_dead_letter" in text
    finally:
        breaker.reset("other")


@pytest.mark.parametrize("env", ["test", "production defaults"])
def test_no_message_outlives_the_visibility_timeout(monkeypatch, settings_override, env):
    """task time limit + broker call timeout + the longest countdown stay well under the timeout,
    so Redis never hands a message to a second worker while the first still holds it."""
    import celeryconfig
    from app.core.config import Settings
    from workers.celery_app import celery_app
    from workers.tasks.orders import longest_hold_s

    if env != "test":
        for name in ("ORDER_RETRY_CAP_S", "ORDER_RETRY_BASE_S", "BROKER_TIMEOUT_S"):
            monkeypatch.delenv(name, raising=False)
        defaults = Settings()
        settings_override(order_retry_cap_s=defaults.order_retry_cap_s, order_retry_base_s=defaults.order_retry_base_s,
                          broker_timeout_s=defaults.broker_timeout_s)
    visibility = celery_app.conf.broker_transport_options["visibility_timeout"]
    assert longest_hold_s() < visibility / 2, (longest_hold_s(), visibility)
    assert celeryconfig.task_acks_late and celeryconfig.task_reject_on_worker_lost
