"""What the chart renders is valid Kubernetes: kubeconform -strict against the JSON schemas of a
real Kubernetes release's OpenAPI documents and of prometheus-operator's ServiceMonitor and
PrometheusRule CRDs.

deploy/kubeconform-tool.sh builds kubeconform and converts the schemas (both from the Go module
proxy) into .cache/ the first time; see the chart README, "Validation". Every value set in
deploy/helm/streamwallet/ci/ is rendered and each of its resources must be valid: none skipped,
none without a schema. The canary tests show the schemas refuse what the API server refuses
(unknown fields, wrong types), so a pass means something.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm_chart import (
    CHART,
    ROOT,
    Helm,
    build_helm,
    copy_with_dashboards,
    render_objects,
    render_text,
    value_set_files,
)

KUBECONFORM_TOOL = ROOT / "deploy" / "kubeconform-tool.sh"
VALID = "statusValid"
# The oldest Kubernetes minor the chart supports (Chart.yaml's kubeVersion) and a current one:
# k8s.io/kubernetes module versions.
RELEASES = ("v1.25.16", "v1.34.4")


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return build_helm(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def kubeconform() -> Path:
    """kubeconform and the schemas, built and converted if missing (a failure fails the tests)."""
    built = subprocess.run(
        ["bash", str(KUBECONFORM_TOOL)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=tool_environment(),
    )
    if built.returncode != 0:
        pytest.fail(f"deploy/kubeconform-tool.sh failed ({built.returncode}):\n{built.stderr[-4000:]}")
    binary = Path(built.stdout.strip().splitlines()[-1])
    assert binary == ROOT / ".cache" / "bin" / "kubeconform"
    return binary


def tool_environment(release: str = RELEASES[-1]) -> dict[str, str]:
    return {**os.environ, "KUBERNETES_VERSIONS": " ".join(RELEASES), "KUBERNETES_VERSION": release}


def validate(manifests: str, release: str = RELEASES[-1]) -> list[dict[str, Any]]:
    """kubeconform's verdict on each resource of a YAML stream (through the tool's `check`)."""
    result = subprocess.run(
        ["bash", str(KUBECONFORM_TOOL), "check", "-output", "json", "-verbose", "-"],
        input=manifests,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=tool_environment(release),
    )
    assert result.stderr == "", result.stderr
    resources: list[dict[str, Any]] = json.loads(result.stdout)["resources"]
    assert result.returncode == (0 if all(r["status"] == VALID for r in resources) else 1), result.stdout
    return resources


def invalid(resources: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["kind"], r["name"], r.get("msg", "")) for r in resources if r["status"] != VALID]


def test_the_oldest_release_validated_is_the_charts_oldest() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.25.0-0"
    assert RELEASES[0].startswith("v1.25.")


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("values", value_set_files(), ids=lambda path: path.name.removesuffix("-values.yaml"))
def test_every_value_set_renders_valid_kubernetes(helm: Helm, kubeconform: Path, values: Path, release: str) -> None:
    manifests = render_text(helm, files=(values,))
    rendered = [document for document in yaml.safe_load_all(manifests) if document]
    resources = validate(manifests, release)
    assert invalid(resources) == []
    assert sorted((r["kind"], r["name"]) for r in resources) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in rendered
    )


def test_the_dashboards_configmaps_are_valid(helm: Helm, kubeconform: Path, tmp_path: Path) -> None:
    chart = copy_with_dashboards(tmp_path)
    manifests = render_text(helm, "metrics.grafanaDashboards.enabled=true", chart=chart)
    resources = validate(manifests)
    assert invalid(resources) == []
    assert len([r for r in resources if r["kind"] == "ConfigMap"]) == 3


def test_the_value_sets_cover_what_the_chart_can_render(helm: Helm) -> None:
    """Between them, the value sets render every kind of object the chart has."""
    kinds = {document["kind"] for values in value_set_files() for document in render_objects(helm, files=(values,))}
    assert kinds == {
        "ConfigMap",
        "Deployment",
        "Ingress",
        "Job",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
        "StatefulSet",
    }


CANARY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: unknown-field}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec:
      containers:
        - name: a
          image: a
          resources: {limits: {cpu: 2, memory: 1Gi}}
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /ready, port: http}}
          livenessProbes: {}
---
apiVersion: v1
kind: Service
metadata: {name: wrong-type}
spec:
  ports: [{port: "eighty", targetPort: http}]
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: misspelt-endpoint-field}
spec:
  selector: {matchLabels: {app: a}}
  endpoints: [{port: http, intervall: 30s}]
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: fine}
spec:
  selector: {matchLabels: {app: a}}
  endpoints: [{port: http, path: /metrics, interval: 30s, targetPort: 8080}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: int-or-string}
spec:
  maxUnavailable: 25%
  selector: {matchLabels: {app: a}}
---
apiVersion: example.com/v1
kind: NoSuchKind
metadata: {name: no-schema}
"""


def test_the_schemas_refuse_what_kubernetes_refuses(kubeconform: Path) -> None:
    verdicts = {r["name"]: r for r in validate(CANARY)}
    assert verdicts["unknown-field"]["status"] == "statusInvalid"
    assert "livenessProbes" in verdicts["unknown-field"]["msg"]
    assert verdicts["wrong-type"]["status"] == "statusInvalid"
    assert "want integer" in verdicts["wrong-type"]["msg"]
    assert verdicts["misspelt-endpoint-field"]["status"] == "statusInvalid"
    assert "intervall" in verdicts["misspelt-endpoint-field"]["msg"]
    # Quantities as numbers, ports by name or number, percentages: what the API server takes.
    assert verdicts["fine"]["status"] == VALID
    assert verdicts["int-or-string"]["status"] == VALID
    # A kind without a schema is an error, never skipped.
    assert verdicts["no-schema"]["status"] == "statusError"
    assert "could not find schema" in verdicts["no-schema"]["msg"]


def test_a_second_run_of_the_tool_builds_nothing(kubeconform: Path) -> None:
    again = subprocess.run(
        ["bash", str(KUBECONFORM_TOOL)], capture_output=True, text=True, timeout=60, check=True, env=tool_environment()
    )
    assert again.stdout.strip() == str(kubeconform)
    assert again.stderr == ""
