"""Series from the start: on a fresh deployment — no order, no WebSocket, no batch, no webhook
yet — `/metrics` already carries every series whose label values are known in advance, at 0,
so dashboards and alert rules (`increase(...)`, `status="..."` selectors, ratios) have data
before the first event.

A fresh deployment is a new process on an empty Redis (what workers count lives there): the
app is scraped in a subprocess, once single-process and once under gunicorn in multiprocess
mode (as in production). The label values (tests/support/metric_series.py) are written out on
purpose, and checked against the code that produces them (routes, statuses, outcomes), so neither
side can drift: the order routes here (they need the app), the rest in
tests/unit/ops/test_metric_labels.py, with the stream process's series.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.metric_series import ORDER_REQUEST_STATUSES, assert_at_zero, web_series
from tests.support.processes import GunicornServer
from tests.support.redis_server import PrivateRedis

ROOT = Path(__file__).resolve().parents[3]


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
    # (ready when /metrics answers, not /health: it probes the broker, and that can take seconds)
    web = GunicornServer(workers=2, env={**fresh_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
                         ready_path="/metrics", ready_statuses=(200,))
    try:
        deadline = time.monotonic() + 60
        web.start(timeout=60, probe_timeout=5)
        # Both workers must be up (each writes its own file) before the scrape.
        while len(list(tmp_path.glob("counter_*.db"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        text = requests.get(f"{web.url}/metrics", timeout=10).text
    finally:
        web.stop()
    assert_at_zero(text, web_series(account_ids))


# --- the label values are the ones the code produces --------------------------------

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
