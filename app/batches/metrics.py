"""Batch metrics, counted in the worker that settles a batch and exported by the web process."""
from app.batches.service import FINAL_BATCH
from app.core.cluster_metrics import ClusterCounter, ClusterHistogram

# Every final status is exported at 0 until its first batch, so a fresh deployment has the series
# (the BatchRollbackFailed alert's `status="ROLLBACK_FAILED"` among them).
batch_orders_total = ClusterCounter("batch_orders_total", "Settled batches by final status", ("status",),
                                    series=[(status,) for status in sorted(FINAL_BATCH)])
batch_duration_seconds = ClusterHistogram(
    "batch_duration_seconds", "Batch request accepted → settled",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60))


def observe(status: str, duration_s: float | None) -> None:
    batch_orders_total.inc(status=status)
    if duration_s is not None:
        batch_duration_seconds.observe(duration_s)
