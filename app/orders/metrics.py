"""Prometheus metrics of order execution.

REST requests are counted in the web process (`order_requests_total`). What
happens in the workers — prefork children that no scraper can reach — is
counted in Redis (app.core.cluster_metrics) and exported by the web process:

- `order_execution_duration_seconds` histogram: REST accept → broker ack;
- `order_retries_total`; `order_dead_letter_total`;
- live state read at scrape time: `order_dead_letter` (gauge, from the database),
  `circuit_breaker_state{account_id}` (0 closed, 1 half-open, 2 open) and the day's
  order budget, `order_budget_used{account_id}` and `order_budget_used_ratio{account_id}`
  (app.broker.order_budget: accounts of one Zerodha user show the same budget), and each account's
  Kite session, `kite_session_state{account_id,state}` and `kite_session_expires_in_seconds{account_id}`
  (app.kite_session.metrics).
"""
from __future__ import annotations

import logging

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from app.core.cluster_metrics import ClusterCounter, ClusterHistogram

log = logging.getLogger(__name__)

ORDER_REQUESTS = Counter("order_requests_total", "Order REST requests by operation and answer status",
                         ["operation", "status"])
# The statuses each counted route (marked `_counted(operation)` in app/web/api/orders.py, counted by
# the request hook in app/web/http_metrics.py) can answer: the responses its OpenAPI entry
# documents, plus 500 for an unexpected error. Created at 0 here so a fresh deployment already
# has these series: dashboards and alert rules need one before the first request
# (tests/integration/ops/test_metrics_series.py checks the table against the routes).
ORDER_REQUEST_STATUSES = {
    "place": (200, 202, 400, 403, 404, 409, 422, 429, 500, 503),
    "list": (200, 400, 403, 404, 422, 500),
    "dead_letter": (200, 400, 403, 404, 422, 500),
    "get": (200, 404, 500),
    "modify": (202, 400, 404, 409, 422, 500),
    "cancel": (202, 404, 409, 500),
    "replay": (202, 404, 409, 429, 500),
}
for _operation, _statuses in ORDER_REQUEST_STATUSES.items():
    for _status in _statuses:
        ORDER_REQUESTS.labels(operation=_operation, status=str(_status))
del _operation, _statuses, _status
EXECUTION = ClusterHistogram(
    "order_execution_duration_seconds", "Order REST accept to broker acknowledgement",
    buckets=(0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
# Unlabelled cluster counters are exported at 0 until the first increment (app.core.cluster_metrics).
RETRIES = ClusterCounter("order_retries_total", "Order placement retries after transient failures")
DEAD_LETTERS = ClusterCounter("order_dead_letter_total", "Orders dead-lettered after their last attempt")


def count_request(operation: str, status: int) -> None:
    ORDER_REQUESTS.labels(operation=operation, status=str(status)).inc()


def observe_execution(seconds: float) -> None:
    EXECUTION.observe(seconds)


def count_retry() -> None:
    RETRIES.inc()


def count_dead_letter() -> None:
    DEAD_LETTERS.inc()


class OrderStateCollector:
    """Gauges of the present state, read when /metrics is scraped."""

    def describe(self):
        return []

    def collect(self):
        try:
            from app.orders.service import dead_letter_count

            yield GaugeMetricFamily("order_dead_letter", "Orders in DEAD_LETTER now", value=dead_letter_count())
        except Exception:
            log.debug("dead-letter gauge unavailable", exc_info=True)
        try:
            from app.broker.circuit_breaker import order_circuit_breaker

            gauge = GaugeMetricFamily("circuit_breaker_state", "Broker circuit breaker: 0 closed, 1 half-open, 2 open",
                                      labels=["account_id"])
            for account_id, state in sorted(_breaker_states(order_circuit_breaker()).items()):
                gauge.add_metric([account_id], state)
            yield gauge
        except Exception:
            log.debug("circuit breaker gauge unavailable", exc_info=True)
        try:
            yield from _order_budget_gauges()
        except Exception:
            log.debug("order budget gauges unavailable", exc_info=True)
        try:
            from app.kite_session.metrics import session_gauges

            yield from session_gauges()
        except Exception:
            log.debug("session gauges unavailable", exc_info=True)


def _order_budget_gauges():
    """Every registered account (at 0 before its first placement of the day)."""
    from app.orders.budget import budget_statuses

    used = GaugeMetricFamily("order_budget_used", "Placements sent today (IST) against the daily order budget "
                             "of the account's Zerodha user", labels=["account_id"])
    ratio = GaugeMetricFamily("order_budget_used_ratio", "Share of the daily order budget (ORDER_BUDGET_PER_DAY) "
                              "used today (IST)", labels=["account_id"])
    for account_id, status in sorted(budget_statuses(with_queued=False).items()):
        used.add_metric([account_id], status.used)
        ratio.add_metric([account_id], status.used / status.limit if status.limit > 0 else 1.0)
    yield used
    yield ratio


def _breaker_states(breaker) -> dict[str, int]:
    """Every registered account, closed by default, with the breakers that have state: each account
    has its series (at 0) from the start, before its breaker ever records a failure."""
    from sqlalchemy import select

    from app.core.db import new_session
    from app.models import Account

    with new_session() as session:
        states = {account_id: 0 for account_id in session.scalars(select(Account.id))}
    states.update(breaker.states())
    return states
