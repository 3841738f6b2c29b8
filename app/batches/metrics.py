"""Batch metrics: outcomes and how long a batch takes from request to settlement."""
from prometheus_client import Counter, Histogram

batch_orders_total = Counter("batch_orders_total", "Settled batches by final status", ["status"])
batch_duration_seconds = Histogram(
    "batch_duration_seconds", "Batch request accepted → settled",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60))


def observe(status: str, duration_s: float | None) -> None:
    batch_orders_total.labels(status=status).inc()
    if duration_s is not None:
        batch_duration_seconds.observe(duration_s)
