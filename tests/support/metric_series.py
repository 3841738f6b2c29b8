"""The metric series a fresh deployment carries at 0, with their label values written out on
purpose (tests check them against the code that produces them, so neither side can drift),
and reading them from a Prometheus text exposition."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# order_requests_total{operation, status}: each counted route's documented answers, plus 500.
ORDER_REQUEST_STATUSES = {
    "place": {"200", "202", "400", "403", "404", "409", "422", "429", "500", "503"},
    "list": {"200", "400", "403", "404", "422", "500"},
    "dead_letter": {"200", "400", "403", "404", "422", "500"},
    "get": {"200", "404", "500"},
    "modify": {"202", "400", "404", "409", "422", "500"},
    "cancel": {"202", "404", "409", "500"},
    "replay": {"202", "404", "409", "429", "500"},
}
WEBSOCKET_ENDPOINTS = {"orders", "orders_all", "ticks"}
BATCH_STATUSES = {"COMPLETED", "PARTIAL", "ROLLED_BACK", "ROLLBACK_FAILED"}
WEBHOOK_OUTCOMES = {"delivered", "retrying", "failed"}
ORDER_REJECTION_REASONS = {"margin", "freeze", "market_closed", "other"}
MARGIN_CHECK_REQUESTS = {"batch", "order"}
MARGIN_CHECK_REFUSAL_REASONS = {"insufficient_margin", "unavailable"}
POSTBACK_VERIFICATION_OUTCOMES = {"confirmed", "refuted", "unverified"}
STREAM_PUBLISHED_KINDS = {"options", "underlying"}
STREAM_DROP_REASONS = {"breaker_open", "redis_error", "queue_full"}


def web_series(account_ids) -> list[tuple[str, dict]]:
    """Every series the web process's /metrics must carry at 0 before anything has happened."""
    series = [("order_requests_total", {"operation": operation, "status": status})
              for operation, statuses in ORDER_REQUEST_STATUSES.items() for status in statuses]
    series += [("active_websocket_connections", {"endpoint": e}) for e in WEBSOCKET_ENDPOINTS]
    series += [("batch_orders_total", {"status": s}) for s in BATCH_STATUSES]
    series += [("webhook_deliveries_total", {"status": s}) for s in WEBHOOK_OUTCOMES]
    series += [("order_rejections_total", {"reason": r}) for r in ORDER_REJECTION_REASONS]
    series += [("margin_check_refusals_total", {"request": r, "reason": why})
               for r in MARGIN_CHECK_REQUESTS for why in MARGIN_CHECK_REFUSAL_REASONS]
    series += [("postback_verifications_total", {"outcome": o}) for o in POSTBACK_VERIFICATION_OUTCOMES]
    series += [("order_retries_total", {}), ("order_dead_letter_total", {})]
    series += [("circuit_breaker_state", {"account_id": a}) for a in account_ids]
    series += [(name, {"account_id": a}) for name in ("order_budget_used", "order_budget_used_ratio")
               for a in account_ids]
    return series


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def assert_at_zero(text: str, expected: list[tuple[str, dict]]) -> None:
    seen = samples(text)
    keys = [(name, tuple(sorted(labels.items()))) for name, labels in expected]
    missing = [key for key in keys if key not in seen]
    assert not missing, f"{len(missing)} series absent from a fresh /metrics, e.g. {missing[:8]}"
    nonzero = {key: seen[key] for key in keys if seen[key] != 0}
    assert not nonzero, f"series not at 0 on a fresh deployment: {nonzero}"
