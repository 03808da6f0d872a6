"""The alert rules, the dashboard and the operations guide name only metrics the server exports, and the guide
lists them all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from ledger.entrypoints.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def exported() -> set[str]:
    return {family.name for family in Metrics().registry.collect()}


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_alert_rules_use_exported_metrics() -> None:
    names = exported()
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())["groups"][0]["rules"]
    assert rules
    for rule in rules:
        assert rule["alert"] and rule["labels"]["severity"] and rule["annotations"]["summary"]
        for used in re.findall(r"\bledger_[a-z_]+", rule["expr"]):
            assert base(used) in names, f"{rule['alert']} uses {used}, which is not exported"


def test_the_guide_lists_every_exported_metric() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    listed = {base(n) for n in re.findall(r"^\| `(ledger_[a-z_]+)", guide, flags=re.MULTILINE)}
    assert listed == exported()


def test_the_dashboard_uses_exported_metrics() -> None:
    names = exported()
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "ledger-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    for expr in exprs:
        used = re.findall(r"\bledger_[a-z_]+", expr)
        assert used and all(base(u) in names for u in used), expr
