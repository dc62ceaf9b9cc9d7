"""Prometheus and Grafana: the ServiceMonitors (metrics.serviceMonitor) select exactly the Service
of their component and scrape /metrics on the port its pods serve; the dashboards' ConfigMaps
(metrics.grafanaDashboards) carry each JSON file of the chart's dashboards/ folder as it is.

The mechanism's tests copy the chart with dashboard files of their own instead of the shipped ones.
The PrometheusRule (metrics.prometheusRule) holds the groups of the chart's rule file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm_chart import (
    CHART,
    FULLNAME,
    NAMESPACE,
    Helm,
    build_helm,
    copy_with_dashboards,
    render_fails,
    render_objects,
)

SERVER = ("clickhouse.dsn=http://clickhouse:8123", "query.readReplicas.enabled=true")
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
RULES = CHART / "rules" / "streamwallet.rules.yaml"
CONFIGMAP_BYTES_MAX = 1024 * 1024


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return build_helm(tmp_path_factory.mktemp("helm-home"))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [document for document in objects if document["kind"] == kind]


def selected(selector: dict[str, Any], services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Services a ServiceMonitor's label selector picks (matchLabels only: all it uses)."""
    assert set(selector) == {"matchLabels"}, selector
    wanted = selector["matchLabels"].items()
    return [service for service in services if service["metadata"]["labels"].items() >= wanted]


def pods_of(service: dict[str, Any], objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The workloads whose pods a Service selects."""
    wanted = service["spec"]["selector"].items()
    return [
        workload
        for workload in objects
        if workload["kind"] in ("Deployment", "StatefulSet")
        and workload["spec"]["template"]["metadata"]["labels"].items() >= wanted
    ]


def test_no_service_monitor_by_default(helm: Helm) -> None:
    assert of_kind(render_objects(helm), "ServiceMonitor") == []


@pytest.mark.parametrize(
    ("sets", "components"),
    [((), ("worker", "query", "gateway")), (SERVER, ("worker", "query", "query-read", "gateway"))],
    ids=["embedded-chdb", "clickhouse-server-with-read-replicas"],
)
def test_a_service_monitor_per_component_scrapes_its_pods(
    helm: Helm, sets: tuple[str, ...], components: tuple[str, ...]
) -> None:
    objects = render_objects(
        helm, *sets, "metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prometheus"
    )
    monitors = {monitor["metadata"]["name"]: monitor for monitor in of_kind(objects, "ServiceMonitor")}
    assert sorted(monitors) == sorted(f"{FULLNAME}-{component}" for component in components)
    services = of_kind(objects, "Service")
    for component in components:
        monitor = monitors[f"{FULLNAME}-{component}"]
        assert monitor["metadata"]["namespace"] == NAMESPACE
        # What Prometheus selects ServiceMonitors by, and the chart's own labels.
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        assert monitor["metadata"]["labels"]["app.kubernetes.io/component"] == component
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        # Exactly one Service: the query's headless one would scrape the same pod twice.
        [service] = selected(monitor["spec"]["selector"], services)
        [endpoint] = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["path"], endpoint["scheme"]) == ("http", "/metrics", "http")
        assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "10s")
        [port] = [port for port in service["spec"]["ports"] if port["name"] == endpoint["port"]]
        [workload] = pods_of(service, objects)
        assert workload["metadata"]["name"] == f"{FULLNAME}-{component}"
        container_ports = {p["name"] for c in workload["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert port["targetPort"] in container_ports


def test_service_monitor_options(helm: Helm) -> None:
    objects = render_objects(
        helm,
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.namespace=monitoring",
        "metrics.serviceMonitor.interval=15s",
        "metrics.serviceMonitor.endpoints.gateway.authorization.type=Bearer",
        "metrics.serviceMonitor.endpoints.gateway.authorization.credentials.name=prometheus-api-key",
        "metrics.serviceMonitor.endpoints.gateway.authorization.credentials.key=key",
        "metrics.serviceMonitor.metricRelabelings[0].action=drop",
        "metrics.serviceMonitor.metricRelabelings[0].regex=go_.*",
        "metrics.serviceMonitor.metricRelabelings[0].sourceLabels[0]=__name__",
    )
    monitors = {monitor["metadata"]["name"]: monitor for monitor in of_kind(objects, "ServiceMonitor")}
    for name, monitor in monitors.items():
        assert monitor["metadata"]["namespace"] == "monitoring"
        # In another namespace it still selects the release's Services, in the release's.
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["interval"] == "15s"
        assert endpoint["metricRelabelings"] == [{"action": "drop", "regex": "go_.*", "sourceLabels": ["__name__"]}]
        if name.endswith("-gateway"):
            assert endpoint["authorization"] == {
                "type": "Bearer",
                "credentials": {"name": "prometheus-api-key", "key": "key"},
            }
        else:
            assert "authorization" not in endpoint
    assert "interval" in render_fails(helm, "metrics.serviceMonitor.interval=30")


# -- Grafana dashboards ---------------------------------------------------------------------------


@pytest.fixture
def chart_with_dashboards(tmp_path: Path) -> Path:
    return copy_with_dashboards(tmp_path)


def test_the_shipped_dashboards_are_configmaps(helm: Helm) -> None:
    objects = render_objects(helm, "metrics.grafanaDashboards.enabled=true")
    dashboards = {
        d["metadata"]["name"]: d for d in of_kind(objects, "ConfigMap") if "dashboard" in d["metadata"]["name"]
    }
    assert sorted(dashboards) == [
        f"{FULLNAME}-dashboard-streamwallet-overview",
        f"{FULLNAME}-dashboard-streamwallet-worker",
    ]
    uids = set()
    for configmap in dashboards.values():
        [(name, text)] = configmap["data"].items()
        model = json.loads(text)
        assert model["panels"] and model["title"].startswith("streamwallet / "), name
        uids.add(model["uid"])
    assert len(uids) == len(dashboards), "each dashboard has its own uid"


def test_each_dashboard_file_is_a_configmap_for_grafanas_sidecar(helm: Helm, chart_with_dashboards: Path) -> None:
    assert not [
        d
        for d in of_kind(render_objects(helm, chart=chart_with_dashboards), "ConfigMap")
        if d["metadata"]["name"] != f"{FULLNAME}-config"
    ], "dashboards are off by default"
    objects = render_objects(
        helm,
        "metrics.grafanaDashboards.enabled=true",
        "metrics.grafanaDashboards.annotations.grafana_folder=streamwallet",
        chart=chart_with_dashboards,
    )
    dashboards = {
        d["metadata"]["name"]: d for d in of_kind(objects, "ConfigMap") if d["metadata"]["name"] != f"{FULLNAME}-config"
    }
    assert sorted(dashboards) == [f"{FULLNAME}-dashboard-gateway", f"{FULLNAME}-dashboard-ledger-overview"]
    for file in sorted((chart_with_dashboards / "dashboards").glob("*.json")):
        [configmap] = [d for d in dashboards.values() if file.name in d["data"]]
        assert configmap["metadata"]["labels"].items() >= DASHBOARD_LABEL.items()
        assert configmap["metadata"]["annotations"] == {"grafana_folder": "streamwallet"}
        assert configmap["metadata"]["namespace"] == NAMESPACE
        assert configmap["data"] == {file.name: file.read_text().rstrip("\n")}
        assert json.loads(configmap["data"][file.name]) == json.loads(file.read_text())


# -- PrometheusRule -------------------------------------------------------------------------------


def test_the_prometheus_rule_holds_the_rule_files_groups_with_the_runbook_base(helm: Helm) -> None:
    assert of_kind(render_objects(helm), "PrometheusRule") == [], "off by default"
    base = "https://git.example.com/streamwallet/blob/main/"
    objects = render_objects(
        helm,
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        f"metrics.prometheusRule.runbookBaseUrl={base}",
    )
    [rule] = of_kind(objects, "PrometheusRule")
    assert rule["metadata"]["name"] == FULLNAME and rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    expected = yaml.safe_load(RULES.read_text())["groups"]
    for group in expected:
        for one in group["rules"]:
            if "runbook_url" in one.get("annotations", {}):
                one["annotations"]["runbook_url"] = base + one["annotations"]["runbook_url"]
    assert rule["spec"]["groups"] == expected
    assert "{{ $labels.instance }}" in json.dumps(rule["spec"]), "Prometheus's templates reach it unrendered"


def test_a_dashboard_too_large_for_a_configmap_is_refused(helm: Helm, chart_with_dashboards: Path) -> None:
    (chart_with_dashboards / "dashboards" / "huge.json").write_text(json.dumps({"panels": ["x" * CONFIGMAP_BYTES_MAX]}))
    result = helm.run(
        "template",
        "wallet",
        str(chart_with_dashboards),
        "--set",
        "metrics.grafanaDashboards.enabled=true",
        "--set",
        "gateway.auth.apiKeys.secret.name=keys",
    )
    assert result.returncode != 0
    assert "a ConfigMap holds at most 1 MiB" in result.stderr
