"""The operations assets in deploy/ checked against each other and against the code's metric
definitions: alert content and its promtool unit tests, the Grafana dashboard, the metric
inventory and the runbook (no services; promtool itself runs in tests/integration/ops)."""
from __future__ import annotations

import importlib
import json
import os

import pytest

from tests.support.deploy import DEPLOY, alert_rules, deploy_inventory, load_yaml
from tests.support.promql import metric_names, slug

# The alerts the operations brief requires (by name) — a rename must be deliberate.
REQUIRED_ALERTS = {
    "OrderDeadLetterGrowing", "CircuitBreakerOpen", "BatchRollbackFailed", "OrderLatencyHigh",
    "WebHighErrorRate", "WebhookDeliveriesFailing", "StreamDisconnected", "StreamTicksStalled",
    "CeleryWorkerOffline", "OrderRejectionsBurst", "OrderBudgetNearlyUsed",
}
# Metrics the dashboard must chart.
DASHBOARD_METRICS = {
    "http_requests_total", "http_request_duration_seconds", "order_requests_total",
    "order_execution_duration_seconds", "batch_orders_total", "circuit_breaker_state",
    "active_websocket_connections", "order_update_latency_seconds", "webhook_deliveries_total",
    "order_dead_letter", "order_rejections_total", "stream_ticks_received_total", "stream_ticks_published_total",
    "stream_ticks_dropped_total", "stream_tick_to_publish_seconds", "stream_pool_connections",
    "flower_events_total", "flower_task_runtime_seconds", "flower_worker_online",
}
# Modules whose prometheus_client metrics must all be in the inventory, with their process.
METRIC_MODULES = {
    "app.web.http_metrics": "web",
    "app.realtime.metrics": "web",
    "app.orders.metrics": "web",
    "app.webhooks.delivery": "web",  # counted by workers in Redis, exported by web
    "app.batches.metrics": "web",  # likewise
    "app.orders.rejections": "web",  # likewise (counted wherever a rejection is applied)
    "app.broker.margin_check": "web",  # likewise (counted where the margin is checked)
    "app.orders.postback_verification": "web",  # likewise (counted where a postback is verified)
    "workers.stream.metrics": "stream",
}


@pytest.fixture(scope="module")
def inventory():
    return deploy_inventory()


# --- alert content ------------------------------------------------------------

def test_alert_unit_tests_cover_firing_and_healthy_cases():
    """Dead-letter, breaker, rollback, rejection and order-budget alerts are each asserted to fire and to stay quiet."""
    cases: dict[str, set[bool]] = {}
    for test in load_yaml("alerts_test.yml")["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for name in ("OrderDeadLetterGrowing", "CircuitBreakerOpen", "BatchRollbackFailed", "OrderRejectionsBurst",
                 "OrderBudgetNearlyUsed"):
        assert cases.get(name) == {True, False}, name
    untested = {rule["alert"] for rule in alert_rules()} - set(cases)
    assert not untested, f"alerts without a promtool unit test: {sorted(untested)}"


def test_every_alert_has_severity_summary_description_and_runbook():
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert REQUIRED_ALERTS <= set(names), REQUIRED_ALERTS - set(names)
    with open(os.path.join(DEPLOY, os.pardir, "README.md")) as fh:
        anchors = {slug(line.lstrip("#").strip()) for line in fh if line.startswith("#")}
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), rule["alert"]
        expected = f"README.md#runbook-{rule['alert'].lower()}"
        assert annotations["runbook"] == expected, rule["alert"]
        assert f"runbook-{rule['alert'].lower()}" in anchors, f"README.md has no runbook section for {rule['alert']}"


def test_alert_expressions_use_inventoried_metrics(inventory):
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        unknown = {n for n in names if inventory.resolve(n) is None}
        assert not unknown, f"{rule['alert']} uses metrics not in METRICS.md: {unknown}"


def test_required_alert_expressions():
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in alert_rules()}
    assert 'batch_orders_total{status="ROLLBACK_FAILED"}' in exprs["BatchRollbackFailed"]
    assert "histogram_quantile(0.99" in exprs["OrderLatencyHigh"]
    assert "order_execution_duration_seconds_bucket" in exprs["OrderLatencyHigh"]
    assert "> 0.05" in exprs["OrderLatencyHigh"]
    assert "flower_worker_online == 0" in exprs["CeleryWorkerOffline"]
    assert 'increase(order_rejections_total[5m])' in exprs["OrderRejectionsBurst"]
    assert "max by (reason)" in exprs["OrderRejectionsBurst"]
    assert exprs["OrderBudgetNearlyUsed"] == "max by (account_id) (order_budget_used_ratio) >= 0.8"
    breaker = next(rule for rule in alert_rules() if rule["alert"] == "CircuitBreakerOpen")
    assert breaker["for"] == "1m" and "== 2" in breaker["expr"]


# --- Grafana dashboard --------------------------------------------------------

def dashboard() -> dict:
    with open(os.path.join(DEPLOY, "grafana-dashboard.json")) as fh:
        return json.load(fh)


def test_dashboard_shape():
    dash = dashboard()
    assert dash["schemaVersion"] >= 36
    variables = dash["templating"]["list"]
    datasource = [v for v in variables if v["type"] == "datasource"]
    assert datasource and datasource[0]["query"] == "prometheus"
    ids = [panel["id"] for panel in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip()


def test_dashboard_expressions_use_inventoried_metrics(inventory):
    charted = set()
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            for name in names:
                resolved = inventory.resolve(name)
                assert resolved, f"panel {panel['title']!r} uses {name}, not in METRICS.md"
                charted.add(resolved)
    missing = DASHBOARD_METRICS - charted
    assert not missing, f"dashboard lacks panels for {sorted(missing)}"


# --- inventory against the code -----------------------------------------------

def test_promql_metric_extraction():
    """The extractor the two tests above rely on."""
    assert metric_names('histogram_quantile(0.99, sum by (le, endpoint) (rate(x_bucket{job="web",a=~"b|c"}[$__rate_interval])))') == {"x_bucket"}
    assert metric_names('a_total / on (account_id) group_left(z) b > bool 2 and c offset 5m or vector(0)') == {"a_total", "b", "c"}
    assert metric_names('(sum(flower_worker_online) or vector(0)) < 1') == {"flower_worker_online"}
    assert slug("Runbook: OrderDeadLetterGrowing") == "runbook-orderdeadlettergrowing"


def test_code_metrics_are_inventoried(inventory):
    """Every metric defined in the service's metric modules (prometheus_client, and the cluster
    metrics counted in Redis) is listed, same type and labels."""
    from prometheus_client.metrics import MetricWrapperBase

    from app.core.cluster_metrics import ClusterCounter, ClusterHistogram

    for module_name, process in METRIC_MODULES.items():
        module = importlib.import_module(module_name)
        values = list(vars(module).values())
        defined = [(v._name + ("_total" if v._type == "counter" else ""), v._type, tuple(v._labelnames))
                   for v in values if isinstance(v, MetricWrapperBase)]
        defined += [(v.name, "counter", v.labelnames) for v in values if isinstance(v, ClusterCounter)]
        defined += [(v.name, "histogram", ()) for v in values if isinstance(v, ClusterHistogram)]
        assert defined, module_name
        for name, kind, labels in defined:
            entry = inventory.get(name)
            assert entry, f"{name} ({module_name}) missing from METRICS.md"
            assert entry.type == kind, name
            assert entry.labels == labels, name
            assert entry.process.startswith(process), name


def test_flower_metrics_are_inventoried(inventory):
    from flower.events import get_prometheus_metrics

    metrics = get_prometheus_metrics()
    for value in vars(metrics).values():
        name = value._name + ("_total" if value._type == "counter" else "")
        entry = inventory.get(name)
        assert entry and entry.process == "flower", name
        assert entry.type == value._type and entry.labels == tuple(value._labelnames), name
