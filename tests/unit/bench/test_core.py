"""bench.core runs end to end on a tiny load and prints each of its figures."""

from __future__ import annotations

import subprocess
import sys


def test_the_core_benchmark_prints_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.core", "--commands", "300"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for figure in (
        "transfers applied (same shard)",
        "transfers decided, encoded, committed",
        "CPU s per 1,000",
        "the in-memory core's share of it, same run",
        "generated reader ÷ fastavro's reader, same run",
        "records a transfer writes: 3.00 produced",  # two events and a result, every one of them
    ):
        assert figure in done.stdout, done.stdout
