"""Imports flow one way, down (the README's "Layers" table): a package imports only the
packages of the layers below it, so nothing at the bottom depends on what sits on top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each package and the project packages it may import (itself always allowed).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "ledger": frozenset(),  # the pure domain: the standard library only
    "codec": frozenset({"ledger"}),
    "topologies": frozenset({"ledger", "codec"}),
    "deploy": frozenset(),  # starts Kafka, the registry and the tools: no project code
    "foundation": frozenset({"ledger", "codec", "topologies"}),
    "streams": frozenset({"ledger", "codec", "topologies", "foundation"}),
    "sinks": frozenset({"ledger", "codec", "topologies", "foundation"}),
    "gateway": frozenset({"ledger", "codec", "topologies", "foundation"}),
    "streamwallet": frozenset({"ledger", "codec", "topologies", "deploy", "foundation", "streams", "sinks", "gateway"}),
    "bench": frozenset(
        {"ledger", "codec", "topologies", "deploy", "foundation", "streams", "sinks", "gateway", "streamwallet"}
    ),
}


def project_imports(path: Path) -> set[str]:
    """The top-level project packages a file imports (absolute imports only; the project has no others)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return {name.split(".")[0] for name in names} & ({*MAY_IMPORT, "tests"})


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported - MAY_IMPORT[package] - {package})
        for path in sorted((ROOT / package).rglob("*.py"))
        if (imported := project_imports(path)) - MAY_IMPORT[package] - {package}
    }
    assert not wrong, f"{package}/ imports from a layer above it or beside it: {wrong}"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    upward = tmp_path / "upward.py"
    upward.write_text("from streams.processor import LedgerProcessor\nimport ledger.money\n")
    assert project_imports(upward) == {"streams", "ledger"}
