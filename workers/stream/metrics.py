"""Prometheus metrics of the stream process (default registry).

The stream process exposes them itself (``prometheus_client.start_http_server``
in ``__main__``) or through the multiprocess directory if one is configured.
"""
from prometheus_client import Counter, Gauge, Histogram

FRAMES_RECEIVED = Counter(
    "stream_frames_received_total", "Binary frames received from the broker (heartbeats included)", ["account_id"]
)
FRAMES_MALFORMED = Counter("stream_frames_malformed_total", "Binary frames that could not be decoded")
TICKS_RECEIVED = Counter("stream_ticks_received_total", "Ticks decoded from broker frames")
TICKS_PUBLISHED = Counter("stream_ticks_published_total", "Ticks published to Redis pub/sub", ["kind"])
TICKS_DROPPED = Counter(
    "stream_ticks_dropped_total",
    "Ticks not published: reason=breaker_open|redis_error|queue_full",
    ["reason"],
)
# Created at 0 so a fresh stream process has these series before the first tick (rate() and the
# StreamTicksDropped alert need one): `kind` as counted by the batcher, `reason` the publisher's
# failed PublishResult values (workers/stream/publisher.py imports this module, hence the literals)
# and the pool's queue_full.
for _kind in ("options", "underlying"):
    TICKS_PUBLISHED.labels(kind=_kind)
for _reason in ("breaker_open", "redis_error", "queue_full"):
    TICKS_DROPPED.labels(reason=_reason)
del _kind, _reason
BATCH_SIZE = Histogram(
    "stream_batch_size_ticks",
    "Ticks per flushed batch (after keeping the latest tick per token)",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
TICK_TO_PUBLISH_SECONDS = Histogram(
    "stream_tick_to_publish_seconds",
    "Time from a frame's arrival on the WebSocket to the publish of its batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5),
)
ENRICH_SECONDS = Histogram(
    "stream_enrich_seconds", "Time to compute IV and Greeks for one batch",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
POOL_CONNECTIONS = Gauge(
    "stream_pool_connections", "Broker WebSocket connections per account and state", ["account_id", "state"]
)
POOL_SUBSCRIBED = Gauge("stream_pool_subscribed_instruments", "Instruments assigned per account", ["account_id"])
POOL_RECONNECTS = Counter(
    "stream_pool_reconnects_total", "Connections restarted by the pool: reason=silence|gave_up|stuck", ["account_id", "reason"]
)
ORDER_UPDATES = Counter("stream_order_updates_total", "Order update messages received from the broker", ["account_id"])
BREAKER_STATE = Gauge("stream_redis_breaker_state", "Redis publish circuit breaker: 0 closed, 1 half-open, 2 open")
BREAKER_OPENED = Counter("stream_redis_breaker_opened_total", "Times the Redis publish breaker opened")
LEASES_HELD = Gauge("stream_account_leases_held", "Account leases held by this stream process")
INSTRUMENTS_UNASSIGNED = Gauge(
    "stream_instruments_unassigned",
    "Subscribed instruments that get no ticks: no streaming account has room for them (every process "
    "reports all of them while no account streams at all)",
)
