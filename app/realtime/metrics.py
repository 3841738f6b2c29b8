"""Prometheus metrics of the WebSocket relay (multiprocess-safe under gunicorn)."""
from prometheus_client import Counter, Gauge, Histogram

ACTIVE_CONNECTIONS = Gauge("active_websocket_connections", "Open WebSocket connections", ["endpoint"],
                           multiprocess_mode="livesum")
# The `endpoint` of every client (app/realtime/routes.py: "orders" for /ws/orders/{account_id} and its
# /advanced alias, "orders_all" for /ws/orders, "ticks" for /ws/ticks). Created at 0 so a fresh
# deployment has each series before the first connection (in multiprocess mode, in every worker's file).
WEBSOCKET_ENDPOINTS = ("orders", "orders_all", "ticks")
for _endpoint in WEBSOCKET_ENDPOINTS:
    ACTIVE_CONNECTIONS.labels(_endpoint)
del _endpoint
ORDER_UPDATE_LATENCY = Histogram(
    "order_update_latency_seconds", "From an order update's timestamp to its send to a WebSocket client",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SLOW_CLIENTS_DISCONNECTED = Counter("websocket_slow_clients_disconnected_total",
                                    "Order clients closed for falling too far behind")
TICK_BATCHES_DROPPED = Counter("websocket_tick_batches_dropped_total",
                               "Tick batches dropped from slow tick clients' buffers")
HUB_RECONNECTS = Counter("websocket_hub_redis_reconnects_total", "Reconnections of the relay's Redis subscription")
