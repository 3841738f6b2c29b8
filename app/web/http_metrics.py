"""HTTP request metrics under the service-wide names (`http_requests_total`, `http_request_duration_seconds`),
and `order_requests_total{operation,status}` for the order routes.

prometheus-flask-exporter serves /metrics (multiprocess-safe); its own defaults are
named `http_request_total`, so the app observes requests itself, once, in the
after-request hook that also sets X-Process-Time.

`status` is the answer's; 499 ("client closed request", app.web.errors) is a WebSocket client that
left during its handshake — the client's doing, so the 5xx error rate (deploy/alerts.yml) leaves it out.
"""
from flask import current_app
from prometheus_client import Counter, Histogram

from app.orders import metrics as order_metrics

http_requests_total = Counter("http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
http_request_duration_seconds = Histogram(
    "http_request_duration_seconds", "HTTP request latency", ["method", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

ORDER_OPERATION = "order_operation"  # set on a view by the order routes' @_counted(operation)


def observe(method: str, endpoint: str | None, status: int, seconds: float) -> None:
    endpoint = endpoint or "unmatched"  # 404s must not create a label per probed path
    http_requests_total.labels(method, endpoint, str(status)).inc()
    http_request_duration_seconds.labels(method, endpoint).observe(seconds)


def count_operation(endpoint: str | None, status: int) -> None:
    """Count the answer of an order route in order_requests_total, whatever produced it (the view,
    its request schema, an error handler)."""
    operation = getattr(current_app.view_functions.get(endpoint), ORDER_OPERATION, None)
    if operation:
        order_metrics.count_request(operation, status)
