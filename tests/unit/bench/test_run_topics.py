"""A benchmark creates its topics through bench/run_topics.py, which deletes them when the
run ends: topics left behind by earlier runs filled this machine's disk (49 GB) and
stopped the broker in the middle of a run."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench"
CREATING_CALLS = {"ensure_topics"}  # the topology's topics (topologies/admin.py)


def called_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            function = node.func
            names.add(function.id if isinstance(function, ast.Name) else getattr(function, "attr", ""))
    return names


def test_benchmarks_create_the_topologys_topics_only_through_run_topics() -> None:
    callers = {
        path.relative_to(BENCH.parent).as_posix() for path in BENCH.rglob("*.py") if called_names(path) & CREATING_CALLS
    }
    assert callers == {"bench/run_topics.py"}
