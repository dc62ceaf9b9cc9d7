"""First benchmark: deposits through the whole command side (producer -> worker ->
results), closed loop, then open loop at a fixed rate.

    python -m bench.deposits [--workers 1] [--partitions 8] [--commands 20000] [--rate 1000]

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

from bench.harness import Driver, cpu_seconds_of, peak_rss_mb_of
from deploy.local import kafka
from foundation.settings import Settings
from ledger import commands
from streamwallet.stack import Stack
from topologies import Topology
from topologies.admin import ensure_topics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop offered rate, commands/s")
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
    ensure_topics(
        {"bootstrap.servers": settings.bootstrap_servers},
        Topology(prefix=settings.topic_prefix, partitions=args.partitions),
    )
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
                commands.OpenAccount(command_id=uuid.uuid4().hex, dedup_id="open", account_id=account, currency="USD")
                for account in accounts
            ],
        )

        def deposits(count: int, tag: str) -> list[commands.Command]:
            return [
                commands.Deposit(
                    command_id=uuid.uuid4().hex,
                    dedup_id=f"{tag}-{index}",
                    account_id=accounts[index % len(accounts)],
                    amount=100,
                    currency="USD",
                )
                for index in range(count)
            ]

        driver.run("warm-up", deposits(2000, "warm"))
        pids = [worker.process.pid for worker in workers if worker.process is not None]
        cpu_before = cpu_seconds_of(pids)
        closed = driver.run("deposits, closed loop", deposits(args.commands, "closed"))
        cpu_closed = cpu_seconds_of(pids) - cpu_before
        opened = driver.run(
            f"deposits, open loop at {args.rate:.0f}/s", deposits(int(args.rate * 10), "open"), rate_per_s=args.rate
        )
        driver.close()
        rss = peak_rss_mb_of(pids)
        print(f"\n{args.workers} worker(s), {args.partitions} partitions, exactly-once (Kafka transactions), acks=all")
        print(f"{'run':<34}{'commands':>9}{'per s':>10}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}")
        for run in (closed, opened):
            row = run.summary()
            print(
                f"{run.name:<34}{row['commands']:>9}{row['throughput_per_s']:>10}{row['p50_ms']:>9}"
                f"{row['p99_ms']:>9}{row['p999_ms']:>10}{row['max_ms']:>9}"
            )
        print(
            f"worker CPU: {cpu_closed / args.commands * 1000:.2f} s per 1,000 commands (closed loop); "
            f"peak RSS: {', '.join(f'{mb:.0f} MiB' for mb in rss.values())}"
        )
        print(
            json.dumps(
                {
                    "closed": closed.summary(),
                    "open": opened.summary(),
                    "workers": args.workers,
                    "partitions": args.partitions,
                    "peak_rss_mb": list(rss.values()),
                    "cpu_s_per_1000": round(cpu_closed / args.commands * 1000, 3),
                    "time": time.time(),
                }
            )
        )
    finally:
        stack.stop_all()


if __name__ == "__main__":
    main()
