"""The Helm chart in deploy/helm/streamwallet, rendered by a real helm binary: shared by the chart
tests (tests/unit/test_helm_*.py).

helm is built from source by deploy/helm-tool.sh into .cache/bin/helm when it is missing (about
1.5 minutes the first time); a failed build fails the tests that need it. Rendered documents are
parsed with PyYAML; the older checks in test_helm_chart.py match the text, one document at a
time (the templates render a fixed layout).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "streamwallet"
VALUE_SETS = CHART / "ci"  # the value sets every check runs over (and chart-testing's folder)
HELM_TOOL = ROOT / "deploy" / "helm-tool.sh"
RELEASE = "wallet"
NAMESPACE = "ledger"
FULLNAME = f"{RELEASE}-streamwallet"
# The chart refuses a gateway without a credential source; most tests are about something else.
API_KEYS = "gateway.auth.apiKeys.secret.name=wallet-api-keys"


@dataclasses.dataclass(frozen=True)
class Helm:
    binary: Path
    environment: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=120, check=False, env=self.environment
        )


def build_helm(home: Path) -> Helm:
    """helm, built if needed, with its own empty home (no repositories, no cluster)."""
    built = subprocess.run(["bash", str(HELM_TOOL)], capture_output=True, text=True, timeout=1500, check=False)
    if built.returncode != 0:
        pytest.fail(f"deploy/helm-tool.sh failed ({built.returncode}):\n{built.stderr[-4000:]}")
    binary = Path(built.stdout.strip().splitlines()[-1])
    assert binary == ROOT / ".cache" / "bin" / "helm"
    assert os.access(binary, os.X_OK)
    environment = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return Helm(binary, environment)


def value_set_files() -> list[Path]:
    files = sorted(VALUE_SETS.glob("*-values.yaml"))
    assert files, f"no value sets in {VALUE_SETS}"
    return files


def template_arguments(*sets: str, files: tuple[Path, ...] = (), authenticated: bool = True) -> list[str]:
    arguments = [flag for file in files for flag in ("--values", str(file))]
    if authenticated and not files:
        arguments += ["--set", API_KEYS]
    return arguments + [flag for value in sets for flag in ("--set", value)]


def render_text(
    helm: Helm, *sets: str, files: tuple[Path, ...] = (), authenticated: bool = True, chart: Path = CHART
) -> str:
    """`helm template` with value files and --set options (an API key store unless told otherwise)."""
    arguments = template_arguments(*sets, files=files, authenticated=authenticated)
    result = helm.run("template", RELEASE, str(chart), "--namespace", NAMESPACE, *arguments)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(helm: Helm, *sets: str, authenticated: bool = True) -> list[str]:
    """The rendered documents (hooks included) as text."""
    text = render_text(helm, *sets, authenticated=authenticated)
    documents = [part.strip() for part in re.split(r"^---$", text, flags=re.MULTILINE)]
    return [document for document in documents if document]


def render_objects(
    helm: Helm, *sets: str, files: tuple[Path, ...] = (), authenticated: bool = True, chart: Path = CHART
) -> list[dict[str, Any]]:
    """The rendered documents, parsed."""
    text = render_text(helm, *sets, files=files, authenticated=authenticated, chart=chart)
    return [document for document in yaml.safe_load_all(text) if document]


def render_fails(helm: Helm, *sets: str, authenticated: bool = True, extra: tuple[str, ...] = ()) -> str:
    arguments = template_arguments(*sets, authenticated=authenticated)
    result = helm.run("template", RELEASE, str(CHART), *extra, *arguments)
    assert result.returncode != 0, f"rendering with {sets} should fail:\n{result.stdout[:2000]}"
    return result.stderr


def find_object(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    rendered = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(found) == 1, f"{kind} {name}: found {len(found)} in {rendered}"
    return found[0]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    pod = workload["spec"]["template"]["spec"]
    return list(pod.get("initContainers", [])) + list(pod["containers"])


def environment_names(objects: list[dict[str, Any]]) -> set[str]:
    """Every variable a rendering sets: the ConfigMaps' keys and the containers' env names."""
    names: set[str] = set()
    for document in objects:
        if document["kind"] == "ConfigMap":
            names |= set(document.get("data", {}))
        elif document["kind"] in ("Deployment", "StatefulSet", "Job"):
            names |= {entry["name"] for container in containers(document) for entry in container.get("env", [])}
    return names


def literal_environment(workload: dict[str, Any], container: int = 0) -> dict[str, str]:
    """The `name: value` entries of a container's env (not the valueFrom ones)."""
    entries = containers(workload)[container].get("env", [])
    return {entry["name"]: entry["value"] for entry in entries if "value" in entry}


def copy_with_dashboards(folder: Path) -> Path:
    """A copy of the chart whose dashboards are two files made up here (a dashboard's JSON model)
    instead of the ones it ships."""
    chart = folder / "streamwallet"
    shutil.copytree(CHART, chart)
    dashboards = chart / "dashboards"
    dashboards.mkdir(exist_ok=True)
    for shipped in dashboards.glob("*.json"):
        shipped.unlink()
    for title in ("Ledger_Overview", "gateway"):
        model: dict[str, Any] = {
            "title": title,
            "uid": f"streamwallet-{title.lower()}",
            "schemaVersion": 39,
            "panels": [],
        }
        (dashboards / f"{title}.json").write_text(json.dumps(model, indent=2) + "\n")
    return chart
