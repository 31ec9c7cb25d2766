"""k8s/monitoring/: the alerts and the Grafana dashboard parse, render with `kubectl kustomize`,
point at runbook sections that exist, and query only metrics pixhook's `/metrics` really exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from service.jobs.metrics import JobGauges, job_metric_families
from tests.support.jobs import transform_job, wait_for_status
from webhooks.metrics import DeliveryGauges, delivery_metric_families

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "k8s" / "monitoring"
SEVERITIES = {"info", "warning", "critical"}
METRIC = re.compile(r"\bpixhook_[a-z_]+")
# What a histogram family `x` puts in the exposition besides nothing called plain `x`.
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")

Doc = dict[str, Any]


def rules_file() -> Doc:
    doc: Doc = yaml.safe_load((MONITORING / "alerts.rules.yml").read_text())
    return doc


def prometheus_rule() -> Doc:
    doc: Doc = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    return doc


def dashboard() -> Doc:
    doc: Doc = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return doc


def alerts() -> list[Doc]:
    return [rule for group in rules_file()["groups"] for rule in group["rules"]]


def all_panels(panels: list[Doc]) -> Iterator[Doc]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def expressions() -> list[str]:
    exprs = [str(rule["expr"]) for rule in alerts()]
    exprs += [
        target["expr"]
        for panel in all_panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]
    return exprs


def referenced_names() -> set[str]:
    return {name for expr in expressions() for name in METRIC.findall(expr)}


def series_names(exposition: str) -> set[str]:
    """Every sample name the exposition can carry, from its `# TYPE name kind` lines: a
    counter's TYPE line already names it with `_total`; a histogram's samples add suffixes."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, name, kind = line.split()
        if kind == "histogram":
            names |= {name + suffix for suffix in HISTOGRAM_SERIES}
        else:
            names.add(name)
    return names


def render_monitoring() -> list[Doc]:
    beside = Path(sys.executable).parent / "kubectl"
    kubectl = str(beside) if beside.exists() else shutil.which("kubectl")
    assert kubectl, "kubectl is missing: install the dev extra (make test does)"
    result = subprocess.run(
        [kubectl, "kustomize", str(MONITORING)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def heading_anchor(heading: str) -> str:
    # GitHub's slugs: lower case, punctuation dropped, spaces to hyphens.
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


class _Families(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def test_dashboard_is_valid_json_with_unique_panel_ids():
    board = dashboard()
    panels = list(all_panels(board["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), ids
    assert board["schemaVersion"] >= 36
    assert {i["name"] for i in board["__inputs"]} == {"DS_PROMETHEUS"}
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["type"] in ("timeseries", "stat"), panel["title"]
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_rules_parse_and_the_prometheus_rule_matches_the_rules_file():
    rule = prometheus_rule()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == rules_file(), "prometheus-rules.yaml and alerts.rules.yml differ"
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)), names
    assert len(names) >= 7


def test_every_alert_has_severity_summary_description_and_a_real_runbook():
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        annotations = alert["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        path, _, anchor = annotations["runbook"].partition("#")
        doc = ROOT / path
        assert doc.is_file(), f"{name}: {path} does not exist"
        headings = {
            heading_anchor(line.lstrip("#"))
            for line in doc.read_text().splitlines()
            if line.startswith("#")
        }
        assert anchor in headings, f"{name}: no section #{anchor} in {path}"


def test_queries_aggregate_across_replicas_with_max_not_sum_alone():
    # Every replica reports the same Redis-held figures: a sum over replicas would multiply them.
    # So a sum() may only add up series that max() has already collapsed across replicas.
    for expr in expressions():
        sums = len(re.findall(r"\bsum\b", expr))
        over_max = len(re.findall(r"\bsum\b(?:\s+by\s*\([^)]*\))?\s*\(\s*max\b", expr))
        assert sums == over_max, expr


def test_queried_metrics_are_the_ones_the_metric_families_build():
    families = list(delivery_metric_families({}, DeliveryGauges(0, 0, 0, 0)))
    families += job_metric_families({}, JobGauges(0, 0.0, 0))
    registry = CollectorRegistry()
    registry.register(_Families(families))
    exposed = series_names(generate_latest(registry).decode())
    assert referenced_names() - exposed == set()


def test_queried_metrics_are_exposed_by_the_running_api(in_process_api: httpx.Client):
    api = in_process_api  # the API and its workers in this process
    # One finished job first, so its counters and histograms have samples as well as TYPE lines.
    response = api.post("/v1/jobs", json=transform_job())
    assert response.status_code == 202, response.text
    assert wait_for_status(api, response.json()["id"])["status"] == "succeeded"
    metrics = api.get("/metrics")
    assert metrics.status_code == 200
    exposed = series_names(metrics.text)
    assert "pixhook_jobs_finished_total" in exposed
    missing = referenced_names() - exposed
    assert not missing, f"queried but not exposed by /metrics: {sorted(missing)}"


def test_kustomize_renders_the_rule_and_the_dashboard_config_map():
    docs = render_monitoring()
    kinds = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}
    assert set(kinds) == {("PrometheusRule", "pixhook"), ("ConfigMap", "pixhook-grafana-dashboard")}
    config_map = kinds["ConfigMap", "pixhook-grafana-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["grafana-dashboard.json"]) == dashboard()
    assert kinds["PrometheusRule", "pixhook"]["spec"] == rules_file()
