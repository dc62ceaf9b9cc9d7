"""The benchmark harness runs end to end with a tiny load (results are not asserted:
tests check correctness, benchmarks print figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from foundation.settings import Settings

pytestmark = pytest.mark.kafka


def test_harness_smoke_run(settings: Settings, tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "STREAMWALLET_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "STREAMWALLET_WORKER_WEB_PORT": str(settings.worker_web_port),
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.ledger",
            "--quick",
            "--scenarios",
            "same,batch3",
            "--workers",
            "1",
            "--out",
            str(tmp_path),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (report_path,) = tmp_path.glob("ledger-*.json")
    report = json.loads(report_path.read_text())
    assert {item["name"] for item in report["measured"]} == {"(b) pass-through loop", "ledger: same", "ledger: batch3"}
    assert set(report["baselines"]) == {"(a) raw Kafka, acks=all", "(c) Faust exactly_once agent"}
    for item in report["measured"]:
        assert item["peak"]["commands"] > 0 and item["open_loop"]
    assert list(tmp_path.glob("ledger-*.png"))
    assert "ratio of the baselines" in completed.stdout
