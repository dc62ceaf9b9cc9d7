"""The Prometheus rules (deploy/helm/streamwallet/rules/): `promtool check rules` accepts them,
`promtool test rules` runs their unit tests (each alert fires on the input series that mean
trouble, at the right moment, and stays silent on healthy ones), every alert the operators were
promised is there, and each one's runbook exists in docs/runbooks/ and is linked from the README;
so is every other page of docs/ (situations without an alert, procedures), and the runbooks' index
lists them all. That the command lines they quote parse is tests/unit/test_docs_commands.py.

Whether the metrics the rules read are really exposed is checked against the running processes
in tests/integration/test_observability.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.promql_names import metric_names, recorded_names, rule_file_rules
from tests.promtool import ROOT, built_promtool

RULES = ROOT / "deploy" / "helm" / "streamwallet" / "rules" / "streamwallet.rules.yaml"
RULE_TESTS = RULES.with_name("streamwallet.rules.test.yaml")
RUNBOOKS = ROOT / "docs" / "runbooks"
PROMTOOL_TIMEOUT_S = 120
ALERTS = {
    "StreamwalletWorkerDown",
    "StreamwalletNoProgressWithLag",
    "StreamwalletProducerReplacedRepeatedly",
    "StreamwalletDeadLetters",
    "StreamwalletReconcileMismatch",
    "StreamwalletGateway5xx",
    "StreamwalletSinkLag",
}


@pytest.fixture(scope="module")
def promtool() -> Path:
    return built_promtool()


def run_promtool(promtool: Path, *arguments: str) -> str:
    checked = subprocess.run(
        [str(promtool), *arguments],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
        cwd=RULES.parent,
    )
    assert checked.returncode == 0, f"promtool {' '.join(arguments)}:\n{checked.stdout}{checked.stderr}"
    return checked.stdout


def test_promtool_accepts_the_rules(promtool: Path) -> None:
    assert "SUCCESS" in run_promtool(promtool, "check", "rules", RULES.name)


def test_the_alerts_unit_tests_pass(promtool: Path) -> None:
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", RULE_TESTS.name)


def test_promtool_test_rules_can_fail(promtool: Path, tmp_path: Path) -> None:
    """The unit tests mean something: the same tests against rules whose worker-down alert
    waits 10 minutes instead of 2 fail."""
    (tmp_path / RULES.name).write_text(RULES.read_text().replace("for: 2m", "for: 10m", 1))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    checked = subprocess.run(
        [str(promtool), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
        cwd=tmp_path,
    )
    assert checked.returncode != 0 and "StreamwalletWorkerDown" in checked.stdout + checked.stderr


def test_every_promised_alert_is_there_and_tested() -> None:
    alerts = {rule["alert"] for rule in rule_file_rules(RULES) if "alert" in rule}
    assert alerts == ALERTS
    tests = RULE_TESTS.read_text()
    for alert in alerts:
        assert f"alertname: {alert}\n" in tests, f"{alert} has no promtool unit test"


def test_each_alert_links_its_runbook_and_the_readme_links_each_runbook() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = set()
    for rule in rule_file_rules(RULES):
        if "alert" not in rule:
            continue
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), rule["alert"]
        runbook = ROOT / annotations["runbook_url"]
        assert runbook.parent == RUNBOOKS and runbook.is_file(), f"{rule['alert']}: {annotations['runbook_url']}"
        text = runbook.read_text()
        assert rule["alert"] in text, f"{runbook.name} does not name {rule['alert']}"
        for section in ("## What it means", "## How to look", "## How to fix"):
            assert section in text, f"{runbook.name} has no {section!r}"
        assert "streamwallet " in text, f"{runbook.name} names none of the operator CLI's commands"
        assert annotations["runbook_url"] in readme, f"the README does not link {annotations['runbook_url']}"
        linked.add(runbook.name)
    assert linked <= {path.name for path in RUNBOOKS.glob("*.md") if path.name != "README.md"}


def test_every_page_in_docs_is_indexed_linked_from_the_readme_and_uses_the_cli() -> None:
    """The runbooks of situations without an alert (docs/runbooks/) and the procedures
    (docs/operations/) too: each is in the runbooks' index and the README, names the operator
    CLI, and a runbook has the three sections."""
    readme = (ROOT / "README.md").read_text()
    index = (RUNBOOKS / "README.md").read_text()
    pages = [page for page in sorted((ROOT / "docs").rglob("*.md")) if page != RUNBOOKS / "README.md"]
    assert {page.parent.name for page in pages} == {"runbooks", "operations"}
    for page in pages:
        text = page.read_text()
        assert page.relative_to(ROOT).as_posix() in readme, f"the README does not link {page.name}"
        assert f"]({os.path.relpath(page, RUNBOOKS)})" in index, f"docs/runbooks/README.md does not index {page.name}"
        assert "streamwallet " in text, f"{page.name} names none of the operator CLI's commands"
        if page.parent == RUNBOOKS:
            for section in ("## What it means", "## How to look", "## How to fix"):
                assert section in text, f"{page.name} has no {section!r}"


def test_recorded_series_the_alerts_read_are_recorded() -> None:
    recorded = recorded_names(RULES)
    for rule in rule_file_rules(RULES):
        used = {name for name in metric_names(rule["expr"]) if ":" in name}
        assert used <= recorded, f"{rule.get('alert') or rule.get('record')} reads unrecorded {used - recorded}"
