"""The benchmark harness runs end to end with a tiny load, and fails loudly when results
are missing (figures are not asserted: tests check correctness, benchmarks print figures)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from bench import harness
from bench.figures import GENERATOR, MissingResults
from bench.harness import Driver
from bench.processes import broker_processes
from foundation.clients import kafka_config
from foundation.settings import Settings
from ledger import commands

pytestmark = pytest.mark.kafka

BENCH_TIMEOUT_S = 600


def bench_environment(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "STREAMWALLET_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "STREAMWALLET_WORKER_WEB_PORT": str(settings.worker_web_port),
    }


def topic_names(settings: Settings) -> set[str]:
    admin = AdminClient(kafka_config(settings))
    return set(admin.list_topics(timeout=30).topics)


def run_module(module: str, *arguments: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        env=bench_environment(settings),
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        check=False,
    )


def test_harness_smoke_run(settings: Settings, tmp_path: Path) -> None:
    completed = run_module(
        "bench.ledger",
        "--quick",
        "--scenarios",
        "same",
        "--workers",
        "1",
        "--out",
        str(tmp_path),
        settings=settings,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (report_path,) = tmp_path.glob("ledger-*.json")
    report = json.loads(report_path.read_text())
    assert {item["name"] for item in report["measured"]} == {"(b) pass-through loop", "ledger: same"}
    assert set(report["baselines"]) == {"(a) raw Kafka, acks=all", "(c) Faust exactly_once agent"}
    # CPU of every process: what the load generator took shows beside the system under test
    assert set(report["baselines"]["(a) raw Kafka, acks=all"]["cpu_s_per_1000_commands"]) == {"broker", GENERATOR}
    assert set(report["baselines"]["(c) Faust exactly_once agent"]["cpu_s_per_1000_commands"]) == {
        "broker",
        "worker 1",
        GENERATOR,
    }
    for item in report["measured"]:
        assert item["peak"]["commands"] > 0 and item["peak"]["samples"] == item["peak"]["commands"]
        assert set(item["cpu_s_per_1000_commands"]) == {"broker", "worker 1", GENERATOR}
        (fixed,) = [run for run in item["open_loop"] if run["offered_per_s"] == 1000.0]
        # one second at 1,000/s: 1,000 samples support p99 but not p99.9
        assert fixed["samples"] == 1000 and fixed["p99_ms"] is not None and fixed["p999_ms"] is None
        # where the workers' turns went in that run: every phase, over the transactions committed in it
        turns = item["fixed_rate_turns"]
        assert turns["transactions"] > 0 and set(turns["mean_ms"]) == {"decide", "send", "commit"}
        assert all(ms >= 0 for ms in turns["mean_ms"].values()) and turns["mean_ms"]["send"] > 0
    assert report["configuration"]["percentile_samples_required"]["p99.9"] == 10_000
    assert list(tmp_path.glob("ledger-*.png"))
    assert "ratio of the baselines" in completed.stdout
    assert "too few samples for that percentile" in completed.stdout
    assert "turns at 1,000/s: mean ms per committed transaction, by phase" in completed.stdout
    assert "CPU seconds per 1,000 commands, per process" in completed.stdout


def test_a_run_whose_results_do_not_come_fails_loudly(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """No worker runs: the driver (every ledger scenario and the pass-through baseline go
    through it) fails with MissingResults instead of reporting figures. It times the run
    with the garbage collector paused, and the failed run leaves the collector as it was."""
    paused: list[bool] = []
    real_collector_paused = harness.collector_paused

    @contextlib.contextmanager
    def recorded() -> Iterator[None]:
        with real_collector_paused():
            paused.append(not gc.isenabled())
            yield

    monkeypatch.setattr(harness, "collector_paused", recorded)
    driver = Driver(settings)
    try:
        deposit = commands.Deposit(
            command_id=uuid.uuid4().hex, dedup_id="d", account_id="nobody", amount=1, currency="USD"
        )
        with pytest.raises(MissingResults, match=r"1 of 1 results missing after waiting 2s"):
            driver.run("unanswered", [deposit], timeout_s=2.0)
    finally:
        driver.close()
    assert paused == [True]
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_broker_process_is_found_for_its_cpu(settings: Settings) -> None:
    (pid,) = broker_processes(settings.bootstrap_servers).values()
    assert b"kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.slow  # two minutes of kills and restarts: the evidence, not a guarantee of the ledger
def test_route_experiment_treats_both_routes_alike(settings: Settings, tmp_path: Path) -> None:
    """Each restart of either route is awaited (a probe answered on every partition), and
    streamwallet's table balances come from its changelog."""
    report_path = tmp_path / "route.json"
    topics_before = topic_names(settings)
    completed = run_module(
        "bench.route_evidence", "--deposits", "300", "--kills", "1", "--json", str(report_path), settings=settings
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    # Both routes' topics (Faust's changelog and internal topics too) are deleted at the end.
    assert {name for name in topic_names(settings) - topics_before if not name.startswith("__")} == set()
    rows = json.loads(report_path.read_text())
    assert set(rows) == {"Faust exactly_once", "streamwallet loop"}
    for row in rows.values():
        assert row["restarts answering within 180 s"].endswith(" of 1")
        assert row["deposits sent"] >= 300
    ours = rows["streamwallet loop"]
    assert ours["restarts answering within 180 s"] == "1 of 1"
    assert (
        ours["worker dead at the end"],
        ours["outputs missing"],
        ours["outputs duplicated"],
        ours["accounts whose table balance is wrong"],
        ours["table total minus deposits"],
    ) == (0, 0, 0, 0, 0)


def test_sustained_search_smoke_run(settings: Settings, tmp_path: Path) -> None:
    """bench.sustained runs its peak and its open-loop probes end to end, and every probe
    it reports has a result for each command it offered."""
    topics_before = topic_names(settings)
    completed = run_module(
        "bench.sustained", "--quick", "--scenarios", "same", "--workers", "1", "--out", str(tmp_path), settings=settings
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    # Each run writes topics of its own (a fresh prefix): left behind, they filled this
    # machine's disk (49 GB) and stopped the broker in the middle of a run.
    assert {name for name in topic_names(settings) - topics_before if not name.startswith("__")} == set()
    (report_path,) = tmp_path.glob("sustained-*.json")
    (result,) = json.loads(report_path.read_text())["results"]
    assert (result["scenario"], result["workers"]) == ("same", 1)
    assert 1 <= len(result["probes"]) <= 2
    for probe in result["probes"]:
        assert probe["samples"] == probe["commands"] >= 50
        assert probe["held"] == (probe["p99_ms"] is not None and probe["p99_ms"] <= 250)
    held = [probe["offered_per_s"] for probe in result["probes"] if probe["held"]]
    assert result["sustained_per_s"] == (max(held) if held else None)
    assert "sustained: the highest offered rate" in completed.stdout
