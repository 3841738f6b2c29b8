"""gunicorn settings for the `web` process (Procfile)."""
import os
import tempfile

# WEB_HOST: every interface unless set (a platform routes the public $PORT there); `make run` sets
# 127.0.0.1, so a development stack is not on the network.
_host, _port = os.environ.get("WEB_HOST", "").strip() or "0.0.0.0", os.environ.get("PORT", "5000")
bind = f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"  # an IPv6 address in brackets
# gevent: each WebSocket is a greenlet, so one worker holds thousands of them.
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "2000"))
timeout = 60
graceful_timeout = 10
accesslog = None  # the app logs each request as a JSON line with its correlation id

# Prometheus multiprocess mode: every worker writes its metrics to this directory
# and /metrics merges them (prometheus-flask-exporter reads the variable at import).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="ticker-metrics-"))


def post_fork(server, worker):
    # psycopg2 blocks the whole process while it waits for PostgreSQL; under gevent that
    # would stall every WebSocket of the worker. psycogreen makes the waits cooperative.
    if "gevent" in server.cfg.worker_class_str:
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()


def post_worker_init(worker):
    # A worker holding 2,000 WebSockets tracks about a million objects; CPython's default GC thresholds
    # then run a full collection every second or two under tick traffic, each a 100-300 ms pause of
    # every socket of the worker (the relay's p99). Objects alive once the app is loaded are frozen
    # (never scanned again), and young collections wait for 50,000 new objects instead of 700, so
    # short-lived messages die by reference counting before they would be promoted.
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def child_exit(server, worker):
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)
