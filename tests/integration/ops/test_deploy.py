"""The operations assets in deploy/ with the tools and processes that read them: promtool checks
the Prometheus config, the alert rules and their unit tests; the app's /metrics (in process and
under gunicorn in multiprocess mode) exports what the metric inventory lists. The checks of the
assets against each other need none of this: tests/unit/ops/test_deploy_assets.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import requests
import yaml

from tests.support.deploy import DEPLOY, alert_rules, deploy_inventory, load_yaml
from tests.support.metrics_inventory import parse_exposition
from tests.support.processes import GunicornServer


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install -y prometheus (Debian package `prometheus`)"
    return path


def run_promtool(*args: str, cwd: str = DEPLOY) -> str:
    result = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def inventory():
    return deploy_inventory()


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
    web = GunicornServer(workers=1, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    try:
        web.start(timeout=60)  # /health answering 200 or 503; fails with its log if gunicorn dies
        exported = parse_exposition(requests.get(f"{web.url}/metrics", timeout=10).text)
    finally:
        web.stop()
    # Multiprocess mode shows a labelled metric only once one of its series has a value: expect
    # the unlabelled ones and the request metrics that the /health call above has produced.
    expected = {name for name, entry in inventory.entries.items()
                if entry.process.startswith("web") and entry.status == "exported" and not entry.single_process_only
                and (not entry.labels or name in ("http_requests_total", "http_request_duration_seconds"))}
    assert {"http_requests_total", "order_update_latency_seconds"} <= expected
    missing = expected - set(exported)
    assert not missing, f"gunicorn /metrics lacks {sorted(missing)}"
