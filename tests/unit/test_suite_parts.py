"""`./sw test` runs the suite in two parts: the tests marked kafka or registry in one process,
the rest in a process per core. A test in the second part that asked for the session's broker
or registry would start and stop it from several processes at once; tests/conftest.py marks
every test that asks for one, whatever its module says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Uses the broker through its fixtures without a marker of its own: the case the marking is for.
UNMARKED_BROKER_USER = "tests/unit/sinks/test_sink_loop.py"
COLLECT = (sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "tests.suite_probe")


def _asking_for_a_shared_server(selection: str, path: str, out: Path) -> list[str]:
    """The tests `-m selection` picks under `path` that ask for a shared server."""
    run = subprocess.run(
        [*COLLECT, "-m", selection, path],
        check=False,
        cwd=ROOT,
        env={**os.environ, "SUITE_PROBE_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out.read_text().splitlines()


def test_no_test_of_the_parallel_part_asks_for_the_shared_broker_or_registry(tmp_path: Path) -> None:
    shared = _asking_for_a_shared_server("kafka or registry", UNMARKED_BROKER_USER, tmp_path / "shared")
    assert shared and all(nodeid.startswith(UNMARKED_BROKER_USER) for nodeid in shared), shared
    assert _asking_for_a_shared_server("not kafka and not registry", "tests", tmp_path / "parallel") == []
