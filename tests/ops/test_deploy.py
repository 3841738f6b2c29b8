"""The operations assets in deploy/: Prometheus config, alert rules and their unit tests,
the Grafana dashboard, the metric inventory and the runbook — checked against each other
and against what the code really exports."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests
import yaml

from tests.ops.promql import metric_names, slug
from tests.ops.inventory import load_inventory, parse_exposition
from tests.support.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")

# The alerts the operations brief requires (by name) — a rename must be deliberate.
REQUIRED_ALERTS = {
    "OrderDeadLetterGrowing", "CircuitBreakerOpen", "BatchRollbackFailed", "OrderLatencyHigh",
    "WebHighErrorRate", "WebhookDeliveriesFailing", "StreamDisconnected", "StreamTicksStalled",
    "CeleryWorkerOffline",
}
# Metrics the dashboard must chart.
DASHBOARD_METRICS = {
    "http_requests_total", "http_request_duration_seconds", "order_requests_total",
    "order_execution_duration_seconds", "batch_orders_total", "circuit_breaker_state",
    "active_websocket_connections", "order_update_latency_seconds", "webhook_deliveries_total",
    "order_dead_letter", "stream_ticks_received_total", "stream_ticks_published_total",
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
    "workers.stream.metrics": "stream",
}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install -y prometheus (Debian package `prometheus`)"
    return path


def run_promtool(*args: str, cwd: str = DEPLOY) -> str:
    result = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def load_yaml(name: str) -> dict:
    with open(os.path.join(DEPLOY, name)) as fh:
        return yaml.safe_load(fh)


def alert_rules() -> list[dict]:
    return [rule for group in load_yaml("alerts.yml")["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="module")
def inventory():
    return load_inventory(os.path.join(DEPLOY, "METRICS.md"))


# --- promtool -----------------------------------------------------------------

def test_alert_rules_are_valid():
    output = run_promtool("check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_prometheus_config_is_valid_and_loads_the_rules():
    output = run_promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in output
    config = load_yaml("prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["web"]["static_configs"][0]["targets"] == ["127.0.0.1:5000"]
    assert jobs["stream"]["static_configs"][0]["targets"] == ["127.0.0.1:9102"]
    assert jobs["flower"]["static_configs"][0]["targets"] == ["127.0.0.1:5555"]
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())


def test_flower_basic_auth_variant_is_valid(tmp_path):
    """The commented basic_auth block, once uncommented as documented, is a valid config."""
    with open(os.path.join(DEPLOY, "prometheus.yml")) as fh:
        text = fh.read()
    block = "    # basic_auth:\n    #   username: flower\n    #   password_file: flower_password\n"
    assert block in text
    (tmp_path / "prometheus.yml").write_text(text.replace(block, block.replace("# ", "")))
    shutil.copy(os.path.join(DEPLOY, "alerts.yml"), tmp_path / "alerts.yml")
    (tmp_path / "flower_password").write_text("secret\n")
    run_promtool("check", "config", "prometheus.yml", cwd=str(tmp_path))
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    flower = next(job for job in config["scrape_configs"] if job["job_name"] == "flower")
    assert flower["basic_auth"] == {"username": "flower", "password_file": "flower_password"}


def test_alert_unit_tests_pass():
    output = run_promtool("test", "rules", "alerts_test.yml")
    assert "SUCCESS" in output


def test_alert_unit_tests_cover_firing_and_healthy_cases():
    """Dead-letter, breaker and rollback alerts are each asserted to fire and to stay quiet."""
    cases: dict[str, set[bool]] = {}
    for test in load_yaml("alerts_test.yml")["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for name in ("OrderDeadLetterGrowing", "CircuitBreakerOpen", "BatchRollbackFailed"):
        assert cases.get(name) == {True, False}, name
    untested = {rule["alert"] for rule in alert_rules()} - set(cases)
    assert not untested, f"alerts without a promtool unit test: {sorted(untested)}"


# --- alert content ------------------------------------------------------------

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


def test_web_metrics_endpoint_matches_inventory(client, headers, inventory):
    """What the app's /metrics really exports: every `exported` web metric is there with its
    labels, every `target` one that appears is marked, and nothing unlisted appears."""
    client.get("/health")
    client.get("/accounts", headers=headers["admin"])
    client.get("/no-such-route", headers=headers["admin"])
    response = client.get("/metrics")
    assert response.status_code == 200
    exported = parse_exposition(response.get_data(as_text=True))
    web = {name: entry for name, entry in inventory.entries.items() if entry.process.startswith("web")}
    for name, entry in web.items():
        if entry.status == "exported":
            assert name in exported, f"{name} documented as exported but absent from /metrics"
            assert exported[name].type == entry.type, name
            if exported[name].labels:  # series present: their label names must be the documented ones
                assert exported[name].labels == set(entry.labels), (name, exported[name].labels)
    ignored_prefixes = ("python_", "process_")
    for name, seen in exported.items():
        if name.startswith(ignored_prefixes) or name.endswith("_created"):
            continue
        entry = inventory.get(name)
        assert entry, f"/metrics exports {name}, which METRICS.md does not list"
        # Other tests of this session import the stream and Flower metric modules into this
        # process's default registry; the web process itself never does.
        foreign = {"stream": "workers.stream.metrics", "flower": "flower.events"}.get(entry.process)
        if foreign and foreign in sys.modules:
            continue
        assert entry.process.startswith("web") or entry.process.startswith("worker"), name
        assert entry.status != "defined" or entry.process.startswith("worker"), name


def test_web_metrics_under_gunicorn_multiprocess(db_schema, inventory, tmp_path):
    """Production runs gunicorn with PROMETHEUS_MULTIPROC_DIR: its /metrics must carry the same
    web metrics as the single-process app (collectors on the default registry do not survive
    multiprocess mode unless registered on the exporter's registry)."""
    port = free_port()
    env = dict(os.environ, PORT=str(port), WEB_CONCURRENCY="1", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/health", timeout=2).status_code in (200, 503):
                    break
            except (requests.ConnectionError, requests.Timeout):  # first request of a fresh process, on a busy machine
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
            time.sleep(0.3)
        exported = parse_exposition(requests.get(f"{base}/metrics", timeout=10).text)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # Multiprocess mode shows a labelled metric only once one of its series has a value: expect
    # the unlabelled ones and the request metrics that the /health call above has produced.
    expected = {name for name, entry in inventory.entries.items()
                if entry.process.startswith("web") and entry.status == "exported" and not entry.single_process_only
                and (not entry.labels or name in ("http_requests_total", "http_request_duration_seconds"))}
    assert {"http_requests_total", "order_update_latency_seconds"} <= expected
    missing = expected - set(exported)
    assert not missing, f"gunicorn /metrics lacks {sorted(missing)}"
