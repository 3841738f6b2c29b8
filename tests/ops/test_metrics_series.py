"""Series from the start: on a fresh deployment — no order, no WebSocket, no batch, no webhook
yet — `/metrics` already carries every series whose label values are known in advance, at 0,
so dashboards and alert rules (`increase(...)`, `status="..."` selectors, ratios) have data
before the first event.

A fresh deployment is a new process on an empty Redis (what workers count lives there): the
app is scraped in a subprocess, once single-process and once under gunicorn in multiprocess
mode (as in production). The label values below are written out here on purpose, and checked
against the code that produces them (routes, statuses, outcomes), so neither side can drift.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port
from tests.support.redis_server import PrivateRedis

ROOT = Path(__file__).resolve().parents[2]

# order_requests_total{operation, status}: each counted route's documented answers, plus 500.
ORDER_REQUEST_STATUSES = {
    "place": {"200", "202", "400", "403", "404", "409", "422", "500"},
    "list": {"200", "400", "403", "404", "422", "500"},
    "dead_letter": {"200", "400", "403", "404", "422", "500"},
    "get": {"200", "404", "500"},
    "modify": {"202", "400", "404", "409", "422", "500"},
    "cancel": {"202", "404", "409", "500"},
    "replay": {"202", "404", "409", "500"},
}
WEBSOCKET_ENDPOINTS = {"orders", "orders_all", "ticks"}
BATCH_STATUSES = {"COMPLETED", "PARTIAL", "ROLLED_BACK", "ROLLBACK_FAILED"}
WEBHOOK_OUTCOMES = {"delivered", "retrying", "failed"}
STREAM_PUBLISHED_KINDS = {"options", "underlying"}
STREAM_DROP_REASONS = {"breaker_open", "redis_error", "queue_full"}


def web_series(account_ids) -> list[tuple[str, dict]]:
    """Every series the web process's /metrics must carry at 0 before anything has happened."""
    series = [("order_requests_total", {"operation": operation, "status": status})
              for operation, statuses in ORDER_REQUEST_STATUSES.items() for status in statuses]
    series += [("active_websocket_connections", {"endpoint": e}) for e in WEBSOCKET_ENDPOINTS]
    series += [("batch_orders_total", {"status": s}) for s in BATCH_STATUSES]
    series += [("webhook_deliveries_total", {"status": s}) for s in WEBHOOK_OUTCOMES]
    series += [("order_retries_total", {}), ("order_dead_letter_total", {})]
    series += [("circuit_breaker_state", {"account_id": a}) for a in account_ids]
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


@pytest.fixture()
def fresh_env(accounts):
    """The environment of a fresh deployment: the test database with its registered accounts,
    and a Redis of its own on which nothing has been counted."""
    redis = PrivateRedis().start()
    try:
        env = dict(os.environ, REDIS_URL=redis.url)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        yield env
    finally:
        redis.stop()


@pytest.fixture()
def account_ids(accounts):
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.models import Account

    with session_scope() as session:
        ids = set(session.scalars(select(Account.id)))
    assert {"primary", "other"} <= ids
    return ids


SCRAPE = """
import sys
from app import create_app
response = create_app().test_client().get("/metrics")
assert response.status_code == 200, response.status_code
open(sys.argv[1], "w").write(response.get_data(as_text=True))
"""


def test_fresh_web_metrics_have_every_known_series_at_zero(fresh_env, account_ids, tmp_path):
    out = tmp_path / "metrics.txt"
    result = subprocess.run([sys.executable, "-c", SCRAPE, str(out)], cwd=ROOT, env=fresh_env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_at_zero(out.read_text(), web_series(account_ids))


def test_fresh_web_metrics_under_gunicorn_multiprocess(fresh_env, account_ids, tmp_path):
    """Production's web: two gunicorn workers merged through PROMETHEUS_MULTIPROC_DIR. The
    process-local series must exist in the workers' files before any request touches them."""
    port = free_port()
    env = dict(fresh_env, PORT=str(port), WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
                             "wsgi:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # (not /health: it probes the broker, and that can take seconds)
            try:
                if requests.get(f"{base}/metrics", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
            time.sleep(0.3)
        # Both workers must be up (each writes its own file) before the scrape.
        while len(list(tmp_path.glob("counter_*.db"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        text = requests.get(f"{base}/metrics", timeout=10).text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert_at_zero(text, web_series(account_ids))


STREAM_SCRAPE = """
import sys
import workers.stream.metrics
from prometheus_client import generate_latest
sys.stdout.write(generate_latest().decode())
"""


def test_fresh_stream_metrics_have_their_fixed_series_at_zero():
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, "-c", STREAM_SCRAPE], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = [("stream_ticks_published_total", {"kind": k}) for k in STREAM_PUBLISHED_KINDS]
    expected += [("stream_ticks_dropped_total", {"reason": r}) for r in STREAM_DROP_REASONS]
    assert_at_zero(result.stdout, expected)


# --- the label values above are the ones the code produces --------------------------------

def _source(relative: str) -> str:
    return (ROOT / relative).read_text()


def test_order_request_statuses_are_what_each_counted_route_answers(app):
    """Every `@_counted(operation)` route, and the statuses its OpenAPI entry documents (+ 500)."""
    from app.web.extensions import api

    routes = re.findall(r'@blp\.route\("([^"]+)", methods=\["(\w+)"\]\)\s*@_counted\("(\w+)"\)',
                        _source("app/web/api/orders.py"))
    assert len(routes) >= len(ORDER_REQUEST_STATUSES)
    paths = api.spec.to_dict()["paths"]
    documented: dict[str, set[str]] = {}
    for rule, method, operation in routes:
        responses = paths[re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)][method.lower()]["responses"]
        documented.setdefault(operation, {"500"}).update(code for code in responses if code.isdigit())
    assert documented == ORDER_REQUEST_STATUSES
    from app.orders.metrics import ORDER_REQUEST_STATUSES as created

    assert {operation: {str(s) for s in statuses} for operation, statuses in created.items()} == documented


def test_websocket_endpoints_are_the_routes_endpoint_labels():
    source = _source("app/realtime/routes.py")
    used = set(re.findall(r'_serve_orders\([^)]*"(\w+)"\)', source)) | set(re.findall(r'endpoint="(\w+)"', source))
    assert used == WEBSOCKET_ENDPOINTS


def test_batch_statuses_are_the_final_statuses():
    from app.batches.service import FINAL_BATCH

    assert set(FINAL_BATCH) == BATCH_STATUSES


def test_webhook_outcomes_are_the_ones_counted():
    assert set(re.findall(r'DELIVERIES\.inc\(status="(\w+)"\)', _source("app/webhooks/delivery.py"))) == WEBHOOK_OUTCOMES


def test_stream_label_values_are_the_ones_counted():
    from workers.stream.publisher import PublishResult

    kinds = set(re.findall(r'TICKS_PUBLISHED\.labels\(kind="(\w+)"\)', _source("workers/stream/batcher.py")))
    assert kinds == STREAM_PUBLISHED_KINDS
    queue = set(re.findall(r'TICKS_DROPPED\.labels\(reason="(\w+)"\)', _source("workers/stream/pool.py")))
    assert {r.value for r in PublishResult if r is not PublishResult.PUBLISHED} | queue == STREAM_DROP_REASONS
