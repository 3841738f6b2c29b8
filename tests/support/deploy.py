"""The operations assets in deploy/ as data: alert rules, Prometheus config, the metric inventory."""
from __future__ import annotations

import os

import yaml

from tests.support.metrics_inventory import Inventory, load_inventory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")


def load_yaml(name: str) -> dict:
    with open(os.path.join(DEPLOY, name)) as fh:
        return yaml.safe_load(fh)


def alert_rules() -> list[dict]:
    return [rule for group in load_yaml("alerts.yml")["groups"] for rule in group["rules"] if "alert" in rule]


def deploy_inventory() -> Inventory:
    """deploy/METRICS.md."""
    return load_inventory(os.path.join(DEPLOY, "METRICS.md"))
