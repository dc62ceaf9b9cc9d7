"""bench/ ships in the package and tests/ does not: no bench module may import tests
(tests may import bench, not the other way)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench"


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            yield node.module


def test_no_bench_module_imports_tests() -> None:
    modules = sorted(BENCH.rglob("*.py"))
    assert modules, BENCH
    offenders = [
        f"{path.relative_to(BENCH.parent)} imports {module}"
        for path in modules
        for module in imported_modules(path)
        if module == "tests" or module.startswith("tests.")
    ]
    assert offenders == []
