"""HTTP request metrics under the service-wide names (`http_requests_total`, `http_request_duration_seconds`).

prometheus-flask-exporter serves /metrics (multiprocess-safe); its own defaults are
named `http_request_total`, so the app observes requests itself, once, in the
after-request hook that also sets X-Process-Time.
"""
from prometheus_client import Counter, Histogram

http_requests_total = Counter("http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
http_request_duration_seconds = Histogram(
    "http_request_duration_seconds", "HTTP request latency", ["method", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def observe(method: str, endpoint: str | None, status: int, seconds: float) -> None:
    endpoint = endpoint or "unmatched"  # 404s must not create a label per probed path
    http_requests_total.labels(method, endpoint, str(status)).inc()
    http_request_duration_seconds.labels(method, endpoint).observe(seconds)
