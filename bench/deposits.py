"""First benchmark: deposits through the whole command side (producer -> worker ->
results), closed loop, then open loop at a fixed rate.

    python -m bench.deposits [--workers 1] [--partitions 8] [--commands 20000] [--rate 1000]
                             [--open-loop-seconds 60]

Uses the Kafka at STREAMWALLET_BOOTSTRAP_SERVERS, or starts the local one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

from bench.figures import GENERATOR, describe_latency, require_accepted
from bench.harness import Driver
from bench.principal import BENCH_PRINCIPAL
from bench.processes import broker_processes, peak_rss_mb
from bench.run_topics import run_topics
from deploy.local import kafka
from foundation.settings import Settings
from ledger import commands
from streamwallet.stack import Stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop offered rate, commands/s")
    parser.add_argument(
        "--open-loop-seconds", type=float, default=60.0, help="open-loop length (60 s: 60,000 samples at 1,000/s)"
    )
    args = parser.parse_args()
    base = Settings.from_environment()
    if "STREAMWALLET_BOOTSTRAP_SERVERS" not in os.environ:
        kafka.start(name="dev", base_port=int(base.bootstrap_servers.rsplit(":", 1)[1]))
    run_dir = Path(tempfile.mkdtemp(prefix="streamwallet-bench-"))
    settings = dataclasses.replace(
        base,
        topic_prefix=f"bench{uuid.uuid4().hex[:6]}",
        partitions=args.partitions,
        data_dir=run_dir / "data",
        worker_web_port=16100,
    )
    with run_topics(settings):  # deleted when the run ends (bench/run_topics.py)
        stack = Stack(settings, run_dir)
        workers = [stack.worker(index).start() for index in range(1, args.workers + 1)]
        try:
            for worker in workers:
                worker.wait_ready()
            driver = Driver(settings)
            accounts = [f"bench-{index}" for index in range(args.accounts)]
            driver.run(
                "open accounts",
                [
                    commands.OpenAccount(
                        principal=BENCH_PRINCIPAL,
                        owner=BENCH_PRINCIPAL.principal_id,
                        command_id=uuid.uuid4().hex,
                        dedup_id="open",
                        account_id=account,
                        currency="USD",
                    )
                    for account in accounts
                ],
            )

            def deposits(count: int, tag: str) -> list[commands.Command]:
                return [
                    commands.Deposit(
                        principal=BENCH_PRINCIPAL,
                        command_id=uuid.uuid4().hex,
                        dedup_id=f"{tag}-{index}",
                        account_id=accounts[index % len(accounts)],
                        amount=100,
                        currency="USD",
                    )
                    for index in range(count)
                ]

            driver.run("warm-up", deposits(2000, "warm"))
            processes = {
                **broker_processes(settings.bootstrap_servers),
                **{
                    f"worker {index}": worker.process.pid
                    for index, worker in enumerate(workers, start=1)
                    if worker.process is not None
                },
                GENERATOR: os.getpid(),
            }
            closed = driver.run("deposits, closed loop", deposits(args.commands, "closed"), processes=processes)
            opened = driver.run(
                f"deposits, open loop at {args.rate:.0f}/s",
                deposits(int(args.rate * args.open_loop_seconds), "open"),
                rate_per_s=args.rate,
                processes=processes,
            )
            for run in (closed, opened):
                require_accepted(run)
            driver.close()
            rss = {name: peak_rss_mb(pid) for name, pid in processes.items() if name.startswith("worker")}
            print(
                f"\n{args.workers} worker(s), {args.partitions} partitions, exactly-once (Kafka transactions), acks=all"
            )
            for run in (closed, opened):
                cpu = ", ".join(f"{name} {value:.3f}" for name, value in run.cpu_s_per_1000().items())
                print(f"{run.name}: {run.throughput:,.0f}/s, {describe_latency(run.latencies_ms)}")
                print(f"  CPU s per 1,000 commands: {cpu}")
            print(f"peak RSS: {', '.join(f'{name} {mb:.0f} MiB' for name, mb in rss.items())}")
            figures = {
                "closed": closed.summary(),
                "open": opened.summary(),
                "workers": args.workers,
                "partitions": args.partitions,
                "peak_rss_mb": rss,
                "time": time.time(),
            }
            print(json.dumps(figures))
        finally:
            stack.stop_all()


if __name__ == "__main__":
    main()
