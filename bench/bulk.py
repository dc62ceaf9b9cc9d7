"""Bulk submit against one command per message, same run, same worker(s).

    python -m bench.bulk [--workers 1] [--bundle-size 1000] [--single 30000] [--bundled 200000]

Same-partition transfers (2,000 accounts, funded first), closed loop: first one command
per Kafka message, then the same kind of workload in `CommandBundle`s of --bundle-size
commands (bulk submit, one bundle per partition's run of commands). Every command has
its own result, timed from the moment its message was sent; the run fails if one is
missing or rejected (bench/figures.py). Printed per run: transfers/s, p50/p99 with their
sample counts, CPU seconds per 1,000 transfers of the broker, each worker and this load
generator, and the load average beside every figure (the machine is shared).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.figures import GENERATOR, MissingResults, RejectedCommands, Run, format_ms, require_accepted
from bench.harness import Driver
from bench.ledger import FUNDING
from bench.processes import ProcessGone, broker_processes
from bench.run_topics import run_topics
from bench.workloads import Ids, deposits_to_each, make_accounts, openings, same_partition_transfers
from deploy.local import kafka
from foundation.settings import Settings
from streamwallet.stack import Stack

ACCOUNTS = 2000
WARM_UP_COMMANDS = 3000
SETTLE_S = 3.0


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


def describe(run: Run, load: str) -> str:
    cpu = run.cpu_s_per_1000()
    per_process = "  ".join(f"{process} {seconds:.3f}" for process, seconds in sorted(cpu.items()))
    under_test = run.system_under_test_cpu_s_per_1000()
    return (
        f"{run.name:<34} {run.commands:>8,} {run.throughput:>10,.0f}/s  p50 {format_ms(run.percentile('p50'))} "
        f"p99 {format_ms(run.percentile('p99'))} (n={len(run.latencies_ms):,})  "
        f"CPU s/1k: {per_process}  under test {under_test or 0:.3f}  [{load}]"
    )


def measure(base: Settings, args: argparse.Namespace, run_dir: Path) -> list[tuple[Run, str]]:
    settings = dataclasses.replace(base, topic_prefix=f"k{uuid.uuid4().hex[:8]}", data_dir=run_dir / "data")
    with run_topics(settings):  # deleted when the run ends (bench/run_topics.py)
        stack = Stack(settings, run_dir / "stack")
        workers = [stack.worker(index).start() for index in range(1, args.workers + 1)]
        try:
            for worker in workers:
                worker.wait_ready()
            time.sleep(1.0 if args.workers > 1 else 0.2)
            driver = Driver(settings)
            rng = random.Random(11)
            ids = Ids(uuid.uuid4().hex[:6])
            accounts = make_accounts(f"acct{uuid.uuid4().hex[:4]}", ACCOUNTS, partitions=settings.partitions)
            require_accepted(driver.run("open", openings(accounts, ids), bundle_size=args.bundle_size))
            funding = deposits_to_each(accounts, ids, amount=FUNDING, dedup_id="fund")
            require_accepted(driver.run("fund", funding, bundle_size=args.bundle_size))
            require_accepted(driver.run("warm-up", same_partition_transfers(accounts, ids, rng, WARM_UP_COMMANDS)))
            processes = {
                **broker_processes(settings.bootstrap_servers),
                **{f"worker {index}": w.process.pid for index, w in enumerate(workers, 1) if w.process is not None},
                GENERATOR: os.getpid(),
            }
            runs: list[tuple[Run, str]] = []
            plan = [("same, 1 per message", args.single, 1), (f"same, bundles of {args.bundle_size}", args.bundled, 0)]
            for _ in range(args.repeat):
                for name, count, bundle_size in plan:
                    time.sleep(SETTLE_S)
                    workload = same_partition_transfers(accounts, ids, rng, count)
                    run = driver.run(name, workload, processes=processes, bundle_size=bundle_size or args.bundle_size)
                    require_accepted(run)
                    runs.append((run, load_average()))
                    print(describe(*runs[-1]), flush=True)
            driver.close()
            return runs
        finally:
            stack.stop_all()


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bundle-size", type=int, default=1000, help="commands per bundle")
    parser.add_argument("--single", type=int, default=30_000, help="transfers sent one per message")
    parser.add_argument("--bundled", type=int, default=200_000, help="transfers sent in bundles")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the two runs this many times")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    base = Settings.from_environment()
    if "STREAMWALLET_BOOTSTRAP_SERVERS" not in os.environ:
        kafka.start(name="dev", base_port=int(base.bootstrap_servers.rsplit(":", 1)[1]))
    run_dir = Path(tempfile.mkdtemp(prefix="streamwallet-bulk-"))
    try:
        runs = measure(base, args, run_dir)
    except (MissingResults, RejectedCommands, ProcessGone) as failure:
        print(f"\nbench.bulk FAILED, no figures: {type(failure).__name__}: {failure}", file=sys.stderr)
        print(f"(worker logs under {run_dir})", file=sys.stderr)
        return 1
    singles = [run.throughput for run, _ in runs if run.name.endswith("per message")]
    bundled = [run.throughput for run, _ in runs if not run.name.endswith("per message")]
    print(f"\nbundled / one per message, same run: {sum(bundled) / len(bundled) / (sum(singles) / len(singles)):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
