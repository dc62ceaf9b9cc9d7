"""The counting and the percentile rule behind every benchmark figure: pure functions,
tested without Kafka."""

from __future__ import annotations

import pytest

from bench.figures import (
    GENERATOR,
    MissingResults,
    RejectedCommands,
    Run,
    completed_run,
    format_ms,
    latency_summary,
    percentile,
    percentiles,
    require_accepted,
    samples_required,
)

# -- counting: a run is what was sent, and every result must be there -------------------------------


def test_a_missing_result_fails_the_run_instead_of_being_counted() -> None:
    # The raw-Kafka baseline used to report `records` commands whatever arrived when its wait
    # timed out; the Faust baseline reported only what arrived. Both now fail.
    sent = {b"0": 0.0, b"1": 0.1, b"2": 0.2}
    received = {b"0": 0.5, b"2": 0.6}
    with pytest.raises(MissingResults, match=r"raw: 1 of 3 results missing") as raised:
        completed_run("raw", sent=sent, received=received, started=0.0)
    assert raised.value.missing == 1 and raised.value.sent == 3


def test_nothing_received_fails_the_run() -> None:
    with pytest.raises(MissingResults, match=r"faust: 2 of 2 results missing after waiting 300s"):
        completed_run("faust", sent={b"a": 1.0, b"b": 1.0}, received={}, started=1.0, waited_s=300.0)


def test_a_run_of_nothing_is_an_error() -> None:
    with pytest.raises(MissingResults, match=r"nothing was sent"):
        completed_run("empty", sent={}, received={}, started=0.0)


def test_a_complete_run_counts_what_was_sent_and_times_to_the_last_result() -> None:
    sent = {b"a": 10.0, b"b": 10.5}
    # a probe sent before the run comes out too: it is not one of the run's commands
    received = {b"probe": 9.0, b"a": 10.25, b"b": 12.0}
    run = completed_run("faust", sent=sent, received=received, started=10.0)
    assert run.commands == 2
    assert run.seconds == 2.0
    assert run.throughput == 1.0
    assert sorted(run.latencies_ms) == [250.0, 1500.0]


def test_rejected_commands_fail_a_measured_run_and_say_why() -> None:
    run = Run(
        name="ledger: same",
        commands=100,
        seconds=1.0,
        latencies_ms=[1.0] * 100,
        rejected=3,
        rejected_codes={"INSUFFICIENT_FUNDS": 1, "BATCH_TIMEOUT": 2},
    )
    with pytest.raises(
        RejectedCommands,
        match=r"ledger: same: 3 of 100 commands were rejected \(BATCH_TIMEOUT 2, INSUFFICIENT_FUNDS 1\)",
    ):
        require_accepted(run)
    require_accepted(Run(name="ok", commands=1, seconds=1.0, latencies_ms=[1.0]))


# -- percentiles: only where the sample count supports them -----------------------------------------


@pytest.mark.parametrize(("name", "required"), [("p50", 20), ("p90", 100), ("p99", 1_000), ("p99.9", 10_000)])
def test_a_percentile_needs_ten_samples_at_or_beyond_it(name: str, required: int) -> None:
    assert samples_required(name) == required
    assert percentile([1.0] * (required - 1), name) is None
    assert percentile([1.0] * required, name) == 1.0


def test_p999_of_6000_samples_is_refused() -> None:
    # the example: it would be the sixth-worst value
    samples = [float(value) for value in range(6_000)]
    assert percentile(samples, "p99.9") is None
    assert percentile(samples, "p99") == 5_940.0


def test_percentiles_are_exact_order_statistics() -> None:
    samples = [float(value) for value in range(10_000, 0, -1)]  # 1..10,000, shuffled order irrelevant
    figures = percentiles(samples)
    assert figures == {"p50": 5_001.0, "p90": 9_001.0, "p99": 9_901.0, "p99.9": 9_991.0}
    # ten samples at or beyond p99.9
    assert sum(1 for value in samples if value >= 9_991.0) == 10


def test_latency_summary_carries_the_sample_count_and_no_unsupported_figure() -> None:
    summary = latency_summary([float(value) for value in range(1, 201)])
    assert summary == {
        "samples": 200,
        "p50_ms": 101.0,
        "p90_ms": 181.0,
        "p99_ms": None,
        "p999_ms": None,
        "max_ms": 200.0,
    }


def test_an_unsupported_figure_prints_as_a_dash() -> None:
    assert format_ms(None) == "—"
    assert format_ms(12.345) == "12.3"


def test_cpu_per_1000_commands_per_process_and_for_the_system_under_test() -> None:
    run = Run(
        name="ledger: same",
        commands=2_000,
        seconds=1.0,
        latencies_ms=[1.0] * 2_000,
        cpu_s={"broker": 0.5, "worker 1": 0.25, GENERATOR: 1.0},
    )
    assert run.cpu_s_per_1000() == {"broker": 0.25, "worker 1": 0.125, GENERATOR: 0.5}
    assert run.system_under_test_cpu_s_per_1000() == 0.375
    summary = run.summary()
    assert summary["samples"] == 2_000
    assert summary["p99_ms"] == 1.0 and summary["p999_ms"] is None
    assert summary["cpu_s_per_1000_commands"] == {"broker": 0.25, "worker 1": 0.125, GENERATOR: 0.5}
