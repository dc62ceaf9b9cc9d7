"""A real promtool for the tests: .cache/bin/promtool, built by deploy/promtool.sh (Go module
proxy, `go install`, cached) when it is not there yet. A missing Go toolchain fails the test
that needs promtool instead of skipping it: the checks must run wherever the suite runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL_TOOL = ROOT / "deploy" / "promtool.sh"
PROMTOOL_BUILD_TIMEOUT_S = 3600  # a cold build: 2-7 minutes on the project's 2-core machine, longer when loaded


def built_promtool() -> Path:
    """The path of promtool, built (once, cached) if needed; a failure fails the caller."""
    if shutil.which("go") is None and not (ROOT / ".cache" / "bin" / "promtool").exists():
        pytest.fail("promtool is not built and go is not on PATH to build it (deploy/promtool.sh needs Go)")
    built = subprocess.run(
        ["bash", str(PROMTOOL_TOOL)], capture_output=True, text=True, timeout=PROMTOOL_BUILD_TIMEOUT_S, check=False
    )
    if built.returncode != 0:
        pytest.fail(f"deploy/promtool.sh failed ({built.returncode}):\n{built.stderr[-4000:]}")
    return Path(built.stdout.strip().splitlines()[-1])
