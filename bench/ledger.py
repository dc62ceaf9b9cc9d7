"""The performance harness: the ledger under each workload, and the baselines it is
compared with, measured in the same run on the same machine.

    python -m bench.ledger                       everything (about 15 minutes)
    python -m bench.ledger --quick               a smoke run with a tiny load
    python -m bench.ledger --scenarios same,cross --workers 1

Workloads: deposits; same-partition transfers; cross-partition transfers; 3-leg
cross-partition batches; a mix over Zipf-skewed (hot) accounts. For each, with 1 and 2
workers: closed-loop peak throughput, then open loop at 25/50/75/100% of that peak and
at 1,000/s, latency measured from the intended send time to the result consumed.
Baselines: (a) raw Kafka, confluent-kafka producing and consuming records of the same
size with acks=all; (b) the pass-through worker (bench/passthrough.py): the same
exactly-once loop without ledger logic; (c) a bare Faust agent with Faust's own
exactly_once (bench/faust_native.py). Output: a table, a JSON file with every figure
and the configuration, and a PNG of latency percentiles against offered load.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.harness import Driver, Run, cpu_seconds_of, peak_rss_mb_of
from bench.workloads import Accounts, Ids, batch_legs, make_accounts, openings, pair, transfer
from deploy.local import kafka
from foundation.consuming import take_available
from foundation.producing import produce_when_room
from foundation.settings import Settings
from ledger import commands
from streamwallet.stack import Stack
from topologies import Topology
from topologies.admin import ensure_topics

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCENARIOS = ("deposits", "same", "cross", "batch3", "zipf")
FUNDING = 10**12
LOAD_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
FIXED_RATE_PER_S = 1000.0


@dataclasses.dataclass
class Scale:
    accounts: int
    peak_commands: int
    open_loop_seconds: float
    warmup_commands: int
    baseline_records: int
    settle_seconds: float  # between runs: the legs of the last flows land, RocksDB flushes


FULL = Scale(
    accounts=2000,
    peak_commands=30_000,
    open_loop_seconds=6,
    warmup_commands=3000,
    baseline_records=60_000,
    settle_seconds=3.0,
)
QUICK = Scale(
    accounts=64, peak_commands=600, open_loop_seconds=1, warmup_commands=100, baseline_records=1000, settle_seconds=0.2
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
                command_id=ids(), dedup_id=ids("d"), account_id=account, amount=100, currency=accounts.currency[account]
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
            commands.Batch(command_id=ids(), dedup_id=ids("d"), batch_id=ids("b"), legs=batch_legs(accounts, rng, 3, 5))
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
    open_loop: list[tuple[float, Run]]
    cpu_s_per_1000: float
    peak_rss_mb: list[float]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "workers": self.workers,
            "peak": self.peak.summary(),
            "open_loop": [{"offered_per_s": rate, **run.summary()} for rate, run in self.open_loop],
            "cpu_s_per_1000_commands": round(self.cpu_s_per_1000, 3),
            "peak_rss_mb": [round(mb, 1) for mb in self.peak_rss_mb],
        }


def measure_workers(
    base: Settings, *, name: str, scenario: str, workers: int, scale: Scale, run_dir: Path, module: str
) -> Measured:
    settings = dataclasses.replace(base, topic_prefix=f"b{uuid.uuid4().hex[:8]}", data_dir=run_dir / "data" / name)
    ensure_topics(
        {"bootstrap.servers": settings.bootstrap_servers},
        Topology(prefix=settings.topic_prefix, partitions=settings.partitions),
    )
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
        driver.run("open", openings(accounts, ids))
        driver.run(
            "fund",
            [
                commands.Deposit(
                    command_id=ids(),
                    dedup_id="fund",
                    account_id=account,
                    amount=FUNDING,
                    currency=accounts.currency[account],
                )
                for account in accounts.ids
            ],
        )
        driver.run("warm-up", scenario_commands(scenario, accounts, ids, rng, scale.warmup_commands))
        time.sleep(scale.settle_seconds)
        pids = [process.process.pid for process in processes if process.process is not None]
        cpu_before = cpu_seconds_of(pids)
        peak = driver.run(f"{name} peak", scenario_commands(scenario, accounts, ids, rng, scale.peak_commands))
        cpu = cpu_seconds_of(pids) - cpu_before
        time.sleep(scale.settle_seconds)  # settles and refunds of the last flows land before the next run
        rates = sorted({round(peak.throughput * fraction) for fraction in LOAD_FRACTIONS} | {FIXED_RATE_PER_S})
        open_loop = []
        for rate in rates:
            count = max(50, int(rate * scale.open_loop_seconds))
            open_loop.append(
                (
                    float(rate),
                    driver.run(
                        f"{name} at {rate}/s", scenario_commands(scenario, accounts, ids, rng, count), rate_per_s=rate
                    ),
                )
            )
        driver.close()
        rss = list(peak_rss_mb_of(pids).values())
        return Measured(
            name=name,
            workers=workers,
            peak=peak,
            open_loop=open_loop,
            cpu_s_per_1000=cpu / scale.peak_commands * 1000,
            peak_rss_mb=rss,
        )
    finally:
        stack.stop_all()


# -- baselines that are not ledger workers ----------------------------------------------------------


def raw_kafka(settings: Settings, *, records: int, size: int) -> Run:
    """(a) confluent-kafka alone: produce (acks=all, idempotent) and consume back."""
    topic = f"raw{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    admin.create_topics([NewTopic(topic, settings.partitions, 1)])[topic].result()
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": topic,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 2,
        }
    )
    consumer.subscribe([topic])
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            "partitioner": "murmur2_random",
        }
    )
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    padding = b"x" * max(0, size - 8)
    done = threading.Event()

    def read() -> None:
        while len(received) < records:
            for message in take_available(consumer, 10_000, 0.05):
                if message.error() is None:
                    received[int.from_bytes((message.value() or b"")[:8], "big")] = time.perf_counter()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(2)  # the consumer joins its group before the clock starts
    started = time.perf_counter()
    for index in range(records):
        sent[index] = time.perf_counter()
        produce_when_room(producer, topic, index.to_bytes(8, "big") + padding, str(index % 1000).encode(), wait_s=0.005)
    producer.flush(60)
    done.wait(120)
    consumer.close()
    latencies = [(received[index] - sent[index]) * 1000 for index in received]
    return Run(
        name="raw Kafka", commands=records, seconds=max(received.values()) - started, latencies_ms=latencies, rejected=0
    )


def faust_native(settings: Settings, *, records: int, run_dir: Path) -> Run:
    """(c) a bare Faust agent with processing_guarantee=exactly_once: deposit -> table -> output."""
    prefix = f"fn{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for future in admin.create_topics(
        [
            NewTopic(f"{prefix}.faust-deposits", settings.partitions, 1),
            NewTopic(f"{prefix}.faust-applied", settings.partitions, 1),
        ]
    ).values():
        future.result()
    environment = {
        **os.environ,
        "STREAMWALLET_TOPIC_PREFIX": prefix,
        "STREAMWALLET_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "STREAMWALLET_PARTITIONS": str(settings.partitions),
        "STREAMWALLET_DATA_DIR": str(run_dir / "faust-native"),
        "STREAMWALLET_WORKER_WEB_PORT": "16499",
    }
    log = open(run_dir / "faust-native.log", "ab")  # noqa: SIM115 - closed with the process
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.faust_native", "worker"],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "acks": "all",
            "linger.ms": 1,
            "partitioner": "murmur2_random",
        }
    )
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": prefix,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 2,
        }
    )
    consumer.assign([TopicPartition(f"{prefix}.faust-applied", p, 0) for p in range(settings.partitions)])
    try:
        # Ready when a probe comes out the other end.
        deadline = time.monotonic() + 120
        producer.produce(f"{prefix}.faust-deposits", b"probe:1", b"probe")
        producer.flush(10)
        while time.monotonic() < deadline:
            if any(m.error() is None for m in consumer.consume(100, 0.5)):
                break
        sent: dict[bytes, float] = {}
        received: dict[bytes, float] = {}
        started = time.perf_counter()
        for index in range(records):
            command_id = b"c%d" % index
            sent[command_id] = time.perf_counter()
            producer.produce(f"{prefix}.faust-deposits", command_id + b":1", b"acct-%d" % (index % 1000))
            if index % 256 == 0:
                producer.poll(0)
        producer.flush(60)
        deadline = time.monotonic() + 300
        while len(received) < records and time.monotonic() < deadline:
            for message in take_available(consumer, 10_000, 0.05):
                if message.error() is None:
                    received.setdefault((message.value() or b"").split(b":")[0], time.perf_counter())
        latencies = [(received[key] - sent[key]) * 1000 for key in sent if key in received]
        return Run(
            name="Faust exactly_once",
            commands=len(latencies),
            seconds=max(received.values(), default=started) - started,
            latencies_ms=latencies,
            rejected=0,
        )
    finally:
        worker.terminate()
        worker.wait(60)
        log.close()
        consumer.close()


# -- reporting ---------------------------------------------------------------------------------------


def table(measured: list[Measured], baselines: dict[str, Run]) -> str:
    lines = [
        f"{'system':<36}{'wk':>3}{'peak/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'@1000/s p50':>12}{'p99':>8}{'p99.9':>8}{'cpu s/1k':>9}{'rss MiB':>9}"
    ]
    for name, run in baselines.items():
        lines.append(f"{name:<36}{'':>3}{run.throughput:>9.0f}{run.percentile(0.5):>9.1f}{run.percentile(0.99):>9.1f}")
    for item in measured:
        fixed = next((run for rate, run in item.open_loop if rate == FIXED_RATE_PER_S), None)
        fixed_cols = (
            f"{fixed.percentile(0.5):>12.1f}{fixed.percentile(0.99):>8.1f}{fixed.percentile(0.999):>8.1f}"
            if fixed
            else " " * 28
        )
        lines.append(
            f"{item.name:<36}{item.workers:>3}{item.peak.throughput:>9.0f}{item.peak.percentile(0.5):>9.1f}"
            f"{item.peak.percentile(0.99):>9.1f}{fixed_cols}{item.cpu_s_per_1000:>9.2f}"
            f"{max(item.peak_rss_mb, default=0):>9.0f}"
        )
    return "\n".join(lines)


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
                [run[percentile] for run in item["open_loop"]],
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


def configuration(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    import faust

    return {
        "python": platform.python_version(),
        "kafka": kafka.KAFKA_VERSION,
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "faust": faust.__version__,
        "cores": os.cpu_count(),
        "partitions": settings.partitions,
        "max_batch_messages": settings.max_batch_messages,
        "poll_timeout_ms": settings.poll_timeout_ms,
        "transaction_timeout_ms": settings.transaction_timeout_ms,
        "acks": "all",
        "exactly_once": True,
        "scale": "quick" if args.quick else "full",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny load: checks the harness, not the system")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    base = Settings.from_environment()
    if "STREAMWALLET_BOOTSTRAP_SERVERS" not in os.environ:
        kafka.start(name="dev", base_port=int(base.bootstrap_servers.rsplit(":", 1)[1]))
    run_dir = Path(tempfile.mkdtemp(prefix="streamwallet-bench-"))
    base = dataclasses.replace(base, worker_web_port=base.worker_web_port + 1000)
    worker_counts = [int(count) for count in args.workers.split(",")]
    baselines: dict[str, Run] = {}
    measured: list[Measured] = []
    if not args.no_baselines:
        baselines["(a) raw Kafka, acks=all"] = raw_kafka(base, records=scale.baseline_records, size=90)
        print(f"(a) raw Kafka: {baselines['(a) raw Kafka, acks=all'].throughput:,.0f} records/s", flush=True)
        baselines["(c) Faust exactly_once agent"] = faust_native(
            base, records=scale.baseline_records // 4, run_dir=run_dir
        )
        print(f"(c) Faust: {baselines['(c) Faust exactly_once agent'].throughput:,.0f} deposits/s", flush=True)
        for workers in worker_counts:
            measured.append(
                measure_workers(
                    base,
                    name="(b) pass-through loop",
                    scenario="deposits",
                    workers=workers,
                    scale=scale,
                    run_dir=run_dir,
                    module="bench.passthrough",
                )
            )
            print(f"(b) pass-through, {workers} worker(s): {measured[-1].peak.throughput:,.0f}/s", flush=True)
    for scenario in args.scenarios.split(","):
        for workers in worker_counts:
            measured.append(
                measure_workers(
                    base,
                    name=f"ledger: {scenario}",
                    scenario=scenario,
                    workers=workers,
                    scale=scale,
                    run_dir=run_dir,
                    module="streamwallet.cli",
                )
            )
            print(f"ledger {scenario}, {workers} worker(s): {measured[-1].peak.throughput:,.0f}/s", flush=True)
    print()
    print(table(measured, baselines))
    ratios = {}
    for item in measured:
        if not item.name.startswith("ledger"):
            continue
        passthrough = next((m for m in measured if m.name.startswith("(b)") and m.workers == item.workers), None)
        for label, baseline_throughput in (
            ("raw_kafka", next((r.throughput for n, r in baselines.items() if n.startswith("(a)")), None)),
            ("pass_through", passthrough.peak.throughput if passthrough else None),
            ("faust", next((r.throughput for n, r in baselines.items() if n.startswith("(c)")), None)),
        ):
            if baseline_throughput:
                ratios[f"{item.name} ({item.workers}w) / {label}"] = round(
                    item.peak.throughput / baseline_throughput, 3
                )
    if ratios:
        print("\nledger peak throughput as a ratio of the baselines measured in this run:")
        for label, ratio in ratios.items():
            print(f"  {label:<60} {ratio:>6.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    report: dict[str, Any] = {
        "configuration": configuration(base, args),
        "baselines": {name: run.summary() for name, run in baselines.items()},
        "measured": [item.summary() for item in measured],
        "ratios": ratios,
    }
    json_path = args.out / f"ledger-{stamp}.json"
    json_path.write_text(json.dumps(report, indent=1))
    png_path = args.out / f"ledger-{stamp}.png"
    plot(report["measured"], png_path)
    print(f"\nwrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
