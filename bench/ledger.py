"""The performance harness: the ledger under each workload, and the baselines it is
compared with, measured in the same run on the same machine.

    python -m bench.ledger                       everything (about 15 minutes)
    python -m bench.ledger --quick               a smoke run with a tiny load
    python -m bench.ledger --scenarios same,cross --workers 1

Workloads: deposits; same-partition transfers; cross-partition transfers; 3-leg
cross-partition batches; a mix over Zipf-skewed (hot) accounts. For each, with 1 and 2
workers: closed-loop peak throughput, then open loop at 1,000/s for --fixed-rate-seconds
(60 s: the run whose p99.9 is reported) and at 25/50/75/100% of the peak for
--sweep-seconds each, latency measured from the intended send time to the result consumed.
Baselines: (a) raw Kafka, confluent-kafka producing and consuming records of the same
size with acks=all; (b) the pass-through worker (bench/passthrough.py): the same
exactly-once loop without ledger logic; (c) a bare Faust agent with Faust's own
exactly_once (bench/faust_native.py).

Every run fails loudly (an exception, exit status 1) if a result is missing, a measured
command was rejected, or a measured process died. Percentiles are printed beside their
sample count, and only where the count supports them (bench/figures.py). CPU is reported
per process (broker, each worker, this load generator) per 1,000 commands. For the run at
1,000/s, each worker's turn is split into its phases (decide, send, commit; bench/turns.py).
Output: tables, a JSON file with every figure and the configuration, and a PNG of
latency percentiles against offered load.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import itertools
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.faust_worker import FaustWorker, command_id_of_output
from bench.figures import (
    GENERATOR,
    PERCENTILES,
    MissingResults,
    RejectedCommands,
    Run,
    completed_run,
    format_ms,
    require_accepted,
    samples_required,
)
from bench.harness import Driver, collector_paused
from bench.principal import BENCH_PRINCIPAL
from bench.processes import ProcessGone, broker_processes, cpu_snapshot, cpu_used, peak_rss_mb
from bench.run_topics import run_topics
from bench.topics import Outputs
from bench.turns import PHASES, TurnSplit, TurnsUnread, read_totals, split
from bench.workloads import Accounts, Ids, batch_legs, deposits_to_each, make_accounts, openings, pair, transfer
from deploy.local import kafka
from foundation.producing import produce_when_room
from foundation.settings import Settings
from ledger import commands
from streamwallet.stack import Stack

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCENARIOS = ("deposits", "same", "cross", "batch3", "zipf")
FUNDING = 10**12
LOAD_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
FIXED_RATE_PER_S = 1000.0


OPEN_LOOP_COMMANDS_MIN = 50
BASELINE_RESULTS_TIMEOUT_S = 300.0
FAUST_READY_TIMEOUT_S = 180.0
FAUST_WEB_PORT = 16499
RAW_WARM_UP_TIMEOUT_S = 60.0
RAW_WARM_UP_ID = b"warm-up!"  # 8 bytes, as the record ids


@dataclasses.dataclass
class Scale:
    accounts: int
    peak_commands: int
    fixed_rate_seconds: float  # the open-loop run at FIXED_RATE_PER_S, whose p99.9 is reported
    sweep_seconds: float  # each open-loop run at a fraction of the peak
    warmup_commands: int
    baseline_records: int
    settle_seconds: float  # between runs: the legs of the last flows land, RocksDB flushes


FULL = Scale(
    accounts=2000,
    peak_commands=30_000,
    fixed_rate_seconds=60,  # 60,000 samples at 1,000/s: p99.9 has 60 samples beyond it
    sweep_seconds=6,
    warmup_commands=3000,
    baseline_records=60_000,
    settle_seconds=3.0,
)
QUICK = Scale(
    accounts=64,
    peak_commands=600,
    fixed_rate_seconds=1,
    sweep_seconds=1,
    warmup_commands=100,
    baseline_records=1000,
    settle_seconds=0.2,
)


# -- workloads -----------------------------------------------------------------------------------


def zipf_choice(rng: random.Random, items: list[str], exponent: float = 1.1) -> Callable[[], str]:
    # Cumulative weights summed once (with plain weights, every draw would sum them again).
    cumulative = list(itertools.accumulate(1 / (rank + 1) ** exponent for rank in range(len(items))))
    return lambda: rng.choices(items, cum_weights=cumulative)[0]


def scenario_commands(name: str, accounts: Accounts, ids: Ids, rng: random.Random, count: int) -> list[Any]:
    if name == "deposits":
        return [
            commands.Deposit(
                principal=BENCH_PRINCIPAL,
                command_id=ids(),
                dedup_id=ids("d"),
                account_id=account,
                amount=100,
                currency=accounts.currency[account],
            )
            for account in (rng.choice(accounts.ids) for _ in range(count))
        ]
    if name in ("same", "cross"):
        result = []
        for _ in range(count):
            source, target = pair(accounts, rng, cross=name == "cross")
            result.append(transfer(ids, source, target, 1, accounts.currency[source]))
        return result
    if name == "batch3":
        return [
            commands.Batch(
                principal=BENCH_PRINCIPAL,
                command_id=ids(),
                dedup_id=ids("d"),
                batch_id=ids("b"),
                legs=batch_legs(accounts, rng, 3, 5),
            )
            for _ in range(count)
        ]
    if name == "zipf":
        hot = zipf_choice(rng, accounts.ids)
        result = []
        for _ in range(count):
            source = hot()
            target = hot()
            while target == source or accounts.currency[target] != accounts.currency[source]:
                target = hot()
            result.append(transfer(ids, source, target, 1, accounts.currency[source]))
        return result
    raise ValueError(name)


# -- one measured system ----------------------------------------------------------------------------


@dataclasses.dataclass
class Measured:
    name: str
    workers: int
    peak: Run
    fixed_rate: Run
    open_loop: list[tuple[float, Run]]  # every open-loop run (the fixed rate among them), by offered rate
    peak_rss_mb: list[float]
    fixed_rate_turns: TurnSplit  # where the workers' turns went during the fixed-rate run

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "workers": self.workers,
            "peak": self.peak.summary(),
            "open_loop": [{"offered_per_s": rate, **run.summary()} for rate, run in self.open_loop],
            "cpu_s_per_1000_commands": {
                process: round(value, 4) for process, value in self.peak.cpu_s_per_1000().items()
            },
            "peak_rss_mb": [round(mb, 1) for mb in self.peak_rss_mb],
            "fixed_rate_turns": self.fixed_rate_turns.summary(),
        }


def this_process() -> dict[str, int]:
    return {GENERATOR: os.getpid()}


def accepted(run: Run) -> Run:
    require_accepted(run)
    return run


def open_loop_rates(peak: Run) -> list[float]:
    return sorted({float(round(peak.throughput * fraction)) for fraction in LOAD_FRACTIONS} | {FIXED_RATE_PER_S})


@dataclasses.dataclass
class ReadyStack:
    """A ledger (or pass-through) stack ready for measured runs: accounts open, funded and
    warmed up with the scenario's own commands."""

    driver: Driver
    accounts: Accounts
    ids: Ids
    rng: random.Random
    processes: dict[str, int]  # what each run measures the CPU of: the brokers, each worker, this process
    worker_pids: list[int]
    worker_urls: list[str]  # each worker's web root: its /metrics

    def commands(self, scenario: str, count: int) -> list[Any]:
        return scenario_commands(scenario, self.accounts, self.ids, self.rng, count)


@contextlib.contextmanager
def loaded_stack(
    base: Settings, *, scenario: str, workers: int, scale: Scale, run_dir: Path, module: str, name: str
) -> Iterator[ReadyStack]:
    settings = dataclasses.replace(base, topic_prefix=f"b{uuid.uuid4().hex[:8]}", data_dir=run_dir / "data" / name)
    with run_topics(settings):  # deleted when the run ends (bench/run_topics.py)
        stack = Stack(settings, run_dir / name)
        processes = [stack.worker(index, module=module).start() for index in range(1, workers + 1)]
        try:
            for process in processes:
                process.wait_ready()
            time.sleep(1.0 if workers > 1 else 0.2)  # the group settles with every member
            driver = Driver(settings)
            rng = random.Random(11)
            ids = Ids(uuid.uuid4().hex[:6])
            accounts = make_accounts(f"acct{uuid.uuid4().hex[:4]}", scale.accounts, partitions=settings.partitions)
            accepted(driver.run("open", openings(accounts, ids)))
            funding = deposits_to_each(accounts, ids, amount=FUNDING, dedup_id="fund")
            accepted(driver.run("fund", funding))
            accepted(driver.run("warm-up", scenario_commands(scenario, accounts, ids, rng, scale.warmup_commands)))
            time.sleep(scale.settle_seconds)
            worker_pids = [process.process.pid for process in processes if process.process is not None]
            measured = {
                **broker_processes(settings.bootstrap_servers),
                **{f"worker {index}": pid for index, pid in enumerate(worker_pids, start=1)},
                **this_process(),
            }
            urls = [f"http://{p.settings.worker_web_host}:{p.settings.worker_web_port}" for p in processes]
            yield ReadyStack(driver, accounts, ids, rng, measured, worker_pids, urls)
            driver.close()
        finally:
            stack.stop_all()


def measure_workers(
    base: Settings, *, name: str, scenario: str, workers: int, scale: Scale, run_dir: Path, module: str
) -> Measured:
    with loaded_stack(
        base, scenario=scenario, workers=workers, scale=scale, run_dir=run_dir, module=module, name=name
    ) as ready:
        driver = ready.driver
        peak = accepted(
            driver.run(f"{name} peak", ready.commands(scenario, scale.peak_commands), processes=ready.processes)
        )
        time.sleep(scale.settle_seconds)  # settles and refunds of the last flows land before the next run
        open_loop = []
        turns: TurnSplit | None = None
        for rate in open_loop_rates(peak):
            seconds = scale.fixed_rate_seconds if rate == FIXED_RATE_PER_S else scale.sweep_seconds
            workload = ready.commands(scenario, max(OPEN_LOOP_COMMANDS_MIN, int(rate * seconds)))
            timed = rate == FIXED_RATE_PER_S  # the run whose turns are split into their phases
            before = [read_totals(url) for url in ready.worker_urls] if timed else []
            run = driver.run(f"{name} at {rate:.0f}/s", workload, rate_per_s=rate, processes=ready.processes)
            open_loop.append((rate, accepted(run)))
            if timed:
                turns = split(before, [read_totals(url) for url in ready.worker_urls])
        if turns is None:
            raise TurnsUnread(f"no run at {FIXED_RATE_PER_S:,.0f}/s among {open_loop_rates(peak)}")
        return Measured(
            name=name,
            workers=workers,
            peak=peak,
            fixed_rate=next(run for rate, run in open_loop if rate == FIXED_RATE_PER_S),
            open_loop=open_loop,
            peak_rss_mb=[peak_rss_mb(pid) for pid in ready.worker_pids],
            fixed_rate_turns=turns,
        )


# -- baselines that are not ledger workers ----------------------------------------------------------


class BaselineNotReady(Exception):
    """A baseline's worker never started answering."""


def raw_kafka(
    settings: Settings, *, records: int, size: int, results_timeout_s: float = BASELINE_RESULTS_TIMEOUT_S
) -> Run:
    """(a) confluent-kafka alone: produce (acks=all, idempotent) and consume back. Every
    record must come back, or the run fails (MissingResults)."""
    name = "(a) raw Kafka, acks=all"
    topic = f"raw{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    admin.create_topics([NewTopic(topic, settings.partitions, 1)])[topic].result()
    outputs = Outputs(settings.bootstrap_servers, topic, id_of=lambda message: (message.value() or b"")[:8])
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            "partitioner": "murmur2_random",
        }
    )
    padding = b"x" * max(0, size - 8)
    processes = {**broker_processes(settings.bootstrap_servers), **this_process()}
    sent: dict[bytes, float] = {}
    try:
        # Warm up: the producer has its idempotence id and the reader its first fetch before the clock starts.
        produce_when_room(producer, topic, RAW_WARM_UP_ID + padding, b"warm-up", wait_s=0.005)
        producer.flush(results_timeout_s)
        if not outputs.wait_for([RAW_WARM_UP_ID], timeout_s=RAW_WARM_UP_TIMEOUT_S):
            raise BaselineNotReady(f"{name}: the warm-up record did not come back within {RAW_WARM_UP_TIMEOUT_S:.0f}s")
        with collector_paused():  # as the driver times the ledger's runs (bench/harness.py)
            cpu_before = cpu_snapshot(processes)
            started = time.perf_counter()
            for index in range(records):
                record_id = index.to_bytes(8, "big")
                sent[record_id] = time.perf_counter()
                produce_when_room(producer, topic, record_id + padding, str(index % 1000).encode(), wait_s=0.005)
            producer.flush(results_timeout_s)
            outputs.wait_for(sent, timeout_s=results_timeout_s)
        run = completed_run(name, sent=sent, received=outputs.first_seen, started=started, waited_s=results_timeout_s)
        return dataclasses.replace(run, cpu_s=cpu_used(processes, since=cpu_before))
    finally:
        outputs.close()


def faust_native(
    settings: Settings, *, records: int, run_dir: Path, results_timeout_s: float = BASELINE_RESULTS_TIMEOUT_S
) -> Run:
    """(c) a bare Faust agent with processing_guarantee=exactly_once: deposit -> table -> output.
    Every deposit must come out, or the run fails (MissingResults)."""
    name = "(c) Faust exactly_once agent"
    worker = FaustWorker(
        bootstrap_servers=settings.bootstrap_servers,
        prefix=f"fn{uuid.uuid4().hex[:6]}",
        partitions=settings.partitions,
        run_dir=run_dir,
        web_port=FAUST_WEB_PORT,
    )
    worker.create_topics()
    worker.start()
    outputs = Outputs(settings.bootstrap_servers, worker.outputs_topic, id_of=command_id_of_output)
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "acks": "all",
            "linger.ms": 1,
            "partitioner": "murmur2_random",
        }
    )
    try:
        if not worker.answers_on_every_partition(
            producer, outputs, round_name="ready", timeout_s=FAUST_READY_TIMEOUT_S
        ):
            raise BaselineNotReady(
                f"{name}: no answer on every partition within {FAUST_READY_TIMEOUT_S:.0f}s:\n{worker.tail()}"
            )
        processes = {**broker_processes(settings.bootstrap_servers), "worker 1": worker.pid, **this_process()}
        sent: dict[bytes, float] = {}
        with collector_paused():  # as the driver times the ledger's runs (bench/harness.py)
            cpu_before = cpu_snapshot(processes)
            started = time.perf_counter()
            for index in range(records):
                command_id = b"c%d" % index
                sent[command_id] = time.perf_counter()
                worker.deposit(producer, command_id=command_id, account=b"acct-%d" % (index % 1000), amount=1)
            producer.flush(results_timeout_s)
            outputs.wait_for(sent, timeout_s=results_timeout_s, still_worth_waiting=lambda: worker.alive)
        run = completed_run(name, sent=sent, received=outputs.first_seen, started=started, waited_s=results_timeout_s)
        return dataclasses.replace(run, cpu_s=cpu_used(processes, since=cpu_before))
    finally:
        worker.stop()
        outputs.close()


# -- reporting ---------------------------------------------------------------------------------------


SYSTEM_COLUMN_WIDTH = 34
FIGURE_COLUMN_WIDTH = 12


def _line(system: str, workers: str, cells: Sequence[str]) -> str:
    return f"{system:<{SYSTEM_COLUMN_WIDTH}}{workers:>3}" + "".join(f"{cell:>{FIGURE_COLUMN_WIDTH}}" for cell in cells)


def _latency_cells(run: Run, names: Sequence[str]) -> list[str]:
    return [format_ms(run.percentile(name)) for name in names] + [f"{len(run.latencies_ms):,}"]


def peak_table(measured: list[Measured], baselines: dict[str, Run]) -> str:
    names = ("p50", "p99")
    lines = [
        "closed loop (peak): every command offered at once; latency from send to result, ms",
        _line("system", "wk", ["commands", "peak/s", *names, "samples"]),
    ]
    rows = [(name, "", run) for name, run in baselines.items()]
    rows += [(item.name, str(item.workers), item.peak) for item in measured]
    for system, workers, run in rows:
        lines.append(
            _line(system, workers, [f"{run.commands:,}", f"{run.throughput:,.0f}", *_latency_cells(run, names)])
        )
    return "\n".join(lines)


def fixed_rate_table(measured: list[Measured], *, seconds: float) -> str:
    names = ("p50", "p99", "p99.9")
    lines = [
        f"open loop at {FIXED_RATE_PER_S:,.0f}/s offered for {seconds:g} s: latency from the intended send time, ms",
        _line("system", "wk", ["delivered/s", *names, "samples"]),
    ]
    for item in measured:
        run = item.fixed_rate
        lines.append(_line(item.name, str(item.workers), [f"{run.throughput:,.0f}", *_latency_cells(run, names)]))
    return "\n".join(lines)


def turn_table(measured: list[Measured]) -> str:
    """Where the workers' turns went during the fixed-rate run (bench/turns.py)."""
    lines = [
        f"turns at {FIXED_RATE_PER_S:,.0f}/s: mean ms per committed transaction, by phase "
        "(decide: batch to records produced; send: records flushed, offsets' call awaited; commit: EndTxn)",
        _line("system", "wk", ["committed", *PHASES]),
    ]
    for item in measured:
        turns = item.fixed_rate_turns
        cells = [f"{turns.transactions:,}", *(f"{turns.mean_ms[phase]:.2f}" for phase in PHASES)]
        lines.append(_line(item.name, str(item.workers), cells))
    return "\n".join(lines)


def _process_order(runs: Sequence[Run]) -> list[str]:
    """Brokers, then workers by number, then anything else; the load generator last."""
    names = {process for run in runs for process in run.cpu_s}

    def rank(process: str) -> tuple[int, int, str]:
        number = int(process.rsplit(" ", 1)[1]) if process[-1].isdigit() else 0
        group = (
            0
            if process.startswith("broker")
            else 1
            if process.startswith("worker")
            else 3
            if process == GENERATOR
            else 2
        )
        return group, number, process

    return sorted(names, key=rank)


def cpu_table(measured: list[Measured], baselines: dict[str, Run]) -> str:
    rows = [(name, "", "peak", run) for name, run in baselines.items()]
    for item in measured:
        rows += [(item.name, str(item.workers), "peak", item.peak)]
        rows += [(item.name, str(item.workers), f"{FIXED_RATE_PER_S:,.0f}/s", item.fixed_rate)]
    processes = _process_order([run for *_, run in rows])
    lines = [
        "CPU seconds per 1,000 commands, per process (user + system, /proc/<pid>/stat, first send to last result);",
        f"'under test' is every process but the {GENERATOR} (this process: producing, consuming, timing)",
        _line("system", "wk", ["run", *processes, "under test"]),
    ]
    for system, workers, label, run in rows:
        per_1000 = run.cpu_s_per_1000()
        under_test = run.system_under_test_cpu_s_per_1000()
        cells = [f"{per_1000[process]:.3f}" if process in per_1000 else "" for process in processes]
        lines.append(_line(system, workers, [label, *cells, "" if under_test is None else f"{under_test:.3f}"]))
    return "\n".join(lines)


def sweep_table(measured: list[Measured]) -> str:
    lines = ["open loop: offered -> delivered per s (p99 ms, samples)"]
    for item in measured:
        runs = " · ".join(
            f"{rate:,.0f} -> {run.throughput:,.0f} ({format_ms(run.percentile('p99'))}, n={len(run.latencies_ms):,})"
            for rate, run in item.open_loop
        )
        lines.append(f"{item.name:<{SYSTEM_COLUMN_WIDTH}}{item.workers:>3}  {runs}")
    return "\n".join(lines)


def percentile_rule() -> str:
    required = ", ".join(f"{name} {samples_required(name):,}" for name in PERCENTILES)
    return f"— : too few samples for that percentile (it needs ten at or beyond it: {required})"


def report_tables(measured: list[Measured], baselines: dict[str, Run], *, fixed_rate_seconds: float) -> str:
    tables = [peak_table(measured, baselines)]
    if measured:
        tables += [fixed_rate_table(measured, seconds=fixed_rate_seconds), turn_table(measured), sweep_table(measured)]
    tables += [cpu_table(measured, baselines), percentile_rule()]
    return "\n\n".join(tables)


def plot(measured: list[dict[str, Any]], path: Path) -> None:
    """Latency percentiles against offered load, drawn from the report's "measured" list:
    one colour per workload, solid for one worker, dashed for two."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(item["name"] for item in measured))
    colours = {name: plt.get_cmap("tab10")(index % 10) for index, name in enumerate(names)}
    figure, axes = plt.subplots(1, 2, figsize=(13, 5))
    for item in measured:
        rates = [run["offered_per_s"] for run in item["open_loop"]]
        for axis, percentile in ((axes[0], "p50_ms"), (axes[1], "p99_ms")):
            axis.plot(
                rates,
                [float("nan") if run[percentile] is None else run[percentile] for run in item["open_loop"]],
                "-o" if item["workers"] == 1 else "--s",
                color=colours[item["name"]],
                label=f"{item['name']} ({item['workers']}w)",
            )
    for axis, title in zip(axes, ("p50", "p99"), strict=True):
        axis.set_xlabel("offered load (commands/s)")
        axis.set_ylabel(f"{title} latency, produce -> result (ms)")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
        axis.set_title(f"{title} latency against offered load")
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def configuration(settings: Settings, args: argparse.Namespace, scale: Scale) -> dict[str, Any]:
    import faust

    return {
        "python": platform.python_version(),
        "kafka": kafka.KAFKA_VERSION,
        "confluent_kafka": importlib.metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "faust": faust.__version__,
        "cores": os.cpu_count(),
        "partitions": settings.partitions,
        "max_batch_messages": settings.max_batch_messages,
        "poll_timeout_ms": settings.poll_timeout_ms,
        "fetch_min_bytes": settings.fetch_min_bytes,
        "transaction_timeout_ms": settings.transaction_timeout_ms,
        "acks": "all",
        "exactly_once": True,
        "scale": "quick" if args.quick else "full",
        "fixed_rate_per_s": FIXED_RATE_PER_S,
        "fixed_rate_seconds": scale.fixed_rate_seconds,
        "sweep_seconds": scale.sweep_seconds,
        "percentile_samples_required": {name: samples_required(name) for name in PERCENTILES},
        "cpu": "user + system seconds per process from /proc/<pid>/stat, first send to last result",
    }


def ratios_to_baselines(measured: list[Measured], baselines: dict[str, Run]) -> dict[str, float]:
    """Each ledger peak as a ratio of the baselines' peaks measured in the same run."""
    raw = next((run.throughput for name, run in baselines.items() if name.startswith("(a)")), None)
    faust = next((run.throughput for name, run in baselines.items() if name.startswith("(c)")), None)
    ratios = {}
    for item in measured:
        if not item.name.startswith("ledger"):
            continue
        passthrough = next((m for m in measured if m.name.startswith("(b)") and m.workers == item.workers), None)
        for label, baseline_throughput in (
            ("raw_kafka", raw),
            ("pass_through", passthrough.peak.throughput if passthrough else None),
            ("faust", faust),
        ):
            if baseline_throughput:
                ratios[f"{item.name} ({item.workers}w) / {label}"] = round(
                    item.peak.throughput / baseline_throughput, 3
                )
    return ratios


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny load: checks the harness, not the system")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument(
        "--fixed-rate-seconds",
        type=float,
        help=f"length of the open-loop run at {FIXED_RATE_PER_S:,.0f}/s, whose p99.9 is reported "
        f"(default {FULL.fixed_rate_seconds:g}; {QUICK.fixed_rate_seconds:g} with --quick)",
    )
    parser.add_argument(
        "--sweep-seconds",
        type=float,
        help=f"length of each open-loop run at a fraction of the peak "
        f"(default {FULL.sweep_seconds:g}; {QUICK.sweep_seconds:g} with --quick)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def chosen_scale(args: argparse.Namespace) -> Scale:
    scale = QUICK if args.quick else FULL
    return dataclasses.replace(
        scale,
        fixed_rate_seconds=args.fixed_rate_seconds or scale.fixed_rate_seconds,
        sweep_seconds=args.sweep_seconds or scale.sweep_seconds,
    )


def measure_everything(
    base: Settings, args: argparse.Namespace, scale: Scale, run_dir: Path
) -> tuple[dict[str, Run], list[Measured]]:
    worker_counts = [int(count) for count in args.workers.split(",")]
    baselines: dict[str, Run] = {}
    measured: list[Measured] = []
    systems: list[tuple[str, str, str]] = []  # (name, scenario, worker module)
    if not args.no_baselines:
        raw = raw_kafka(base, records=scale.baseline_records, size=90)
        baselines[raw.name] = raw
        print(f"{raw.name}: {raw.throughput:,.0f} records/s", flush=True)
        faust = faust_native(base, records=scale.baseline_records // 4, run_dir=run_dir)
        baselines[faust.name] = faust
        print(f"{faust.name}: {faust.throughput:,.0f} deposits/s", flush=True)
        systems.append(("(b) pass-through loop", "deposits", "bench.passthrough"))
    systems += [(f"ledger: {scenario}", scenario, "streamwallet.cli") for scenario in args.scenarios.split(",")]
    for name, scenario, module in systems:
        for workers in worker_counts:
            item = measure_workers(
                base, name=name, scenario=scenario, workers=workers, scale=scale, run_dir=run_dir, module=module
            )
            measured.append(item)
            print(f"{name}, {workers} worker(s): {item.peak.throughput:,.0f}/s", flush=True)
    return baselines, measured


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    json_path = out / f"ledger-{stamp}.json"
    json_path.write_text(json.dumps(report, indent=1))
    png_path = out / f"ledger-{stamp}.png"
    plot(report["measured"], png_path)
    return json_path, png_path


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    scale = chosen_scale(args)
    base = Settings.from_environment()
    if "STREAMWALLET_BOOTSTRAP_SERVERS" not in os.environ:
        kafka.start(name="dev", base_port=int(base.bootstrap_servers.rsplit(":", 1)[1]))
    run_dir = Path(tempfile.mkdtemp(prefix="streamwallet-bench-"))
    base = dataclasses.replace(base, worker_web_port=base.worker_web_port + 1000)
    try:
        baselines, measured = measure_everything(base, args, scale, run_dir)
    except (MissingResults, RejectedCommands, ProcessGone, BaselineNotReady, TurnsUnread) as failure:
        print(f"\nbench.ledger FAILED, no figures: {type(failure).__name__}: {failure}", file=sys.stderr)
        print(f"(worker logs under {run_dir})", file=sys.stderr)
        return 1
    print()
    print(report_tables(measured, baselines, fixed_rate_seconds=scale.fixed_rate_seconds))
    ratios = ratios_to_baselines(measured, baselines)
    if ratios:
        print("\nledger peak throughput as a ratio of the baselines measured in this run:")
        for label, ratio in ratios.items():
            print(f"  {label:<60} {ratio:>6.2f}")
    report: dict[str, Any] = {
        "configuration": configuration(base, args, scale),
        "baselines": {name: run.summary() for name, run in baselines.items()},
        "measured": [item.summary() for item in measured],
        "ratios": ratios,
    }
    json_path, png_path = write_report(report, args.out)
    print(f"\nwrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
