"""manifests/monitoring/: the PrometheusRule, checked and unit-tested with promtool (built from its Go module
by tests.support.gotools), and the Grafana dashboard, loaded and checked against the README's metrics.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import gotools
from tests.test_manifests import MONITORING, ROOT, Doc, one, render

RULE_FILE, DASHBOARD = MONITORING / "prometheusrule.yaml", MONITORING / "meshd-dashboard.json"
RULE_TESTS = ROOT / "tests" / "monitoring" / "rules.test.yaml"
PENDING_METRICS: set[str] = set()  # metrics the alerts may name before the README documents them
# Series not from meshd: Prometheus's own scrape health, and kube-state-metrics for the DaemonSet.
FOREIGN_METRICS = {"up", "kube_daemonset_status_number_unavailable"}
# fmt: off
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "rate", "irate", "increase", "delta", "idelta", "deriv", "time", "vector", "scalar",
    "histogram_quantile", "abs", "absent", "clamp_min", "clamp_max", "label_replace", "label_join", "sort",
    "sort_desc", "round", "ceil", "floor", "timestamp", "and", "or", "unless", "bool", "offset", "by",
    "without", "on", "ignoring", "group_left", "group_right",
}
# fmt: on


def readme_metrics() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Metrics and health", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(meshd_[a-z_]+)[`{]", section))  # not the wildcard `meshd_peer_*`


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (label matchers, ranges, strings and groupings removed)."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    return {t for t in re.findall(r"(?<![\w.])[A-Za-z_:][\w:]*", bare) if t not in PROMQL_WORDS}


def known(name: str) -> bool:
    allowed = readme_metrics() | PENDING_METRICS | FOREIGN_METRICS
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in allowed or (base != name and base in allowed)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = str(gotools.tool("promtool"))
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120)


def rule_groups() -> Doc:
    spec: Doc = yaml.safe_load(RULE_FILE.read_text())["spec"]
    return spec


def alerts() -> list[Doc]:
    return [r for g in rule_groups()["groups"] for r in g["rules"]]


def write_rules(tmp_path: Path, groups: Doc) -> Path:
    path = tmp_path / "meshd-rules.yaml"
    path.write_text(yaml.safe_dump(groups))
    return path


def test_monitoring_kustomization_ships_the_rule_and_the_dashboard() -> None:
    docs = render(MONITORING)
    rule, cm = one(docs, "PrometheusRule"), one(docs, "ConfigMap")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == rule_groups()
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"]["meshd.json"] == DASHBOARD.read_text()


def test_promtool_check_rules_accepts_the_rules(tmp_path: Path) -> None:
    res = promtool("check", "rules", str(write_rules(tmp_path, rule_groups())), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in res.stdout


def test_promtool_check_rules_rejects_a_broken_expression(tmp_path: Path) -> None:
    groups = rule_groups()
    groups["groups"][0]["rules"][0]["expr"] = "sum by (node (meshd_peers"
    res = promtool("check", "rules", str(write_rules(tmp_path, groups)), cwd=tmp_path)
    assert res.returncode != 0
    assert "FAILED" in res.stdout + res.stderr


def run_rule_tests(tmp_path: Path, groups: Doc) -> subprocess.CompletedProcess[str]:
    write_rules(tmp_path, groups)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)


def test_alerts_fire_on_the_series_they_are_meant_for(tmp_path: Path) -> None:
    res = run_rule_tests(tmp_path, rule_groups())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_has_a_firing_unit_test() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {t["alertname"] for c in cases for t in c["alert_rule_test"] if t.get("exp_alerts")}
    assert firing == {a["alert"] for a in alerts()}


@pytest.mark.parametrize(
    ("alert", "old", "new"),
    [
        ("MeshdWireGuardHandshakeStale", "> 180", "> 600"),
        ("MeshdRequiredViolation", "> 0", "> 5"),
        ("MeshdRequiredPeersUnreachable", "> 0", "> 5"),
    ],
)
def test_unit_tests_catch_a_changed_threshold(tmp_path: Path, alert: str, old: str, new: str) -> None:
    groups = rule_groups()
    (rule,) = [r for g in groups["groups"] for r in g["rules"] if r["alert"] == alert]
    assert old in rule["expr"]
    rule["expr"] = rule["expr"].replace(old, new)
    res = run_rule_tests(tmp_path, groups)
    assert res.returncode != 0
    assert alert in res.stdout + res.stderr


def test_alerts_read_only_documented_metrics_and_carry_severity_and_text() -> None:
    for a in alerts():
        unknown = {n for n in metric_names(a["expr"]) if not known(n)}
        assert not unknown, f"{a['alert']}: {unknown} not in the README's metrics"
        assert a["labels"]["severity"] in ("warning", "critical")
        assert a["annotations"]["summary"] and a["annotations"]["description"]
        assert a["alert"].startswith("Meshd")


def test_metric_name_extraction() -> None:
    expr = 'sum by (node) (rate(meshd_x_total{job=~"$job", a="b c"}[5m])) and on (peer) up == 1e3'
    assert metric_names(expr) == {"meshd_x_total", "up"}


def dashboard() -> Doc:
    doc: Doc = json.loads(DASHBOARD.read_text())
    return doc


def graph_panels() -> list[Doc]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def grafana_expr(expr: str) -> str:
    """A panel's query as Grafana sends it, with the dashboard's variables at their 'All' values."""
    for var, value in {"$__rate_interval": "2m", '"$job"': '".*"', '"$node"': '".*"'}.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown variable in {expr}"
    return expr


def test_dashboard_has_what_grafana_needs_to_import_it() -> None:
    d = dashboard()
    assert d["uid"] and len(d["uid"]) <= 40 and d["title"]
    assert isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, p["title"]
        assert p["title"] and p["type"] in ("row", "stat", "timeseries", "table")
    for p in graph_panels():
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        assert all(t["expr"] for t in p["targets"]), p["title"]


def test_dashboard_datasource_is_a_template_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    templated = {"type": "prometheus", "uid": "${datasource}"}
    for p in graph_panels():
        assert p["datasource"] == templated, p["title"]
        assert all(t["datasource"] == templated for t in p["targets"]), p["title"]
    for name in ("job", "node"):
        assert variables[name]["datasource"] == templated


def test_dashboard_queries_read_only_documented_metrics() -> None:
    exprs = [t["expr"] for p in graph_panels() for t in p["targets"]]
    for v in dashboard()["templating"]["list"]:  # label_values(SERIES, LABEL)
        exprs += re.findall(r"label_values\((.+), \w+\)$", v["definition"]) if v["type"] == "query" else []
    used = set().union(*(metric_names(e) for e in exprs))
    assert {n for n in used if not known(n)} == set()
    # every documented metric has a panel, and so does every pending one
    documented = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    assert readme_metrics() | PENDING_METRICS <= documented


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules: list[dict[str, Any]] = [
        {"record": f"dashboard:panel{p['id']}:{t['refId']}", "expr": grafana_expr(t["expr"])}
        for p in graph_panels()
        for t in p["targets"]
    ]
    res = promtool("check", "rules", str(write_rules(tmp_path, {"groups": [{"name": "d", "rules": rules}]})),
                   cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
