"""Worker memory against the number of accounts: one worker opens 1,000,000 accounts (each
with its dedup entry, command index and retention entry, kept for the idempotency window);
its resident set is sampled every `--checkpoint` accounts. The decoded-record cache and
RocksDB's block cache are bounded, so memory should stay flat.

The run's topics that nothing reads back once the worker has answered (commands, events,
results, audit) keep only `--topic-retention-ms` of records, so that a 10,000,000-account run
fits the disk; the changelog, the worker's state, keeps everything.

    python -m bench.memory [--accounts 1000000] [--checkpoint 100000] [--topic-retention-ms 120000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource  # type: ignore[attr-defined]

from bench.harness import Driver
from bench.principal import BENCH_PRINCIPAL
from bench.run_topics import run_topics
from codec import Codec
from deploy.local import kafka
from foundation.clients import kafka_config
from foundation.producing import produce_when_room
from foundation.settings import Settings
from ledger import commands
from streamwallet.stack import Stack

CHUNK = 20_000


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise LookupError(pid)


def worker_metrics(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics.json", timeout=10) as response:
        metrics: dict[str, Any] = json.loads(response.read())
        return metrics


def chunk_end(opened: int, *, total: int, checkpoint: int) -> int:
    """Where the chunk of accounts opened from `opened` ends: CHUNK later, or at the next
    checkpoint, or at the total, whichever comes first (each checkpoint is sampled)."""
    return min(total, opened + CHUNK, (opened // checkpoint + 1) * checkpoint)


def shorten_retention(settings: Settings, retention_ms: int) -> None:
    """Keep `retention_ms` of the run's throwaway topics (in segments of half that)."""
    topology = settings.topology()
    entries = [
        ConfigEntry("retention.ms", str(retention_ms), incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.ms", str(retention_ms // 2), incremental_operation=AlterConfigOpType.SET),
    ]
    resources = [
        ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries)
        for spec in (topology.commands, topology.events, topology.results, topology.audit)
    ]
    admin = AdminClient(kafka_config(settings))  # held: a collected client fails its futures
    for future in admin.incremental_alter_configs(resources).values():
        future.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--checkpoint", type=int, default=100_000)
    parser.add_argument("--topic-retention-ms", type=int, default=120_000)
    args = parser.parse_args()
    base = Settings.from_environment()
    if "STREAMWALLET_BOOTSTRAP_SERVERS" not in os.environ:
        kafka.start(name="dev", base_port=int(base.bootstrap_servers.rsplit(":", 1)[1]))
    run_dir = Path(tempfile.mkdtemp(prefix="streamwallet-memory-"))
    settings = dataclasses.replace(
        base,
        topic_prefix=f"mem{uuid.uuid4().hex[:6]}",
        data_dir=run_dir / "data",
        worker_web_port=base.worker_web_port + 2000,
    )
    with run_topics(settings):  # deleted when the run ends (bench/run_topics.py)
        shorten_retention(settings, args.topic_retention_ms)
        stack = Stack(settings, run_dir)
        worker = stack.worker(1).start()
        codec = Codec()
        try:
            worker.wait_ready()
            assert worker.process is not None
            pid = worker.process.pid
            driver = Driver(settings, codec)
            producer = Producer(
                {
                    "bootstrap.servers": settings.bootstrap_servers,
                    "partitioner": "murmur2_random",
                    "acks": "all",
                    "linger.ms": 5,
                    "queue.buffering.max.messages": 2_000_000,
                }
            )
            samples: list[tuple[int, float]] = [(0, rss_mb(pid))]
            started = time.monotonic()
            opened = 0
            while opened < args.accounts:
                batch = [
                    commands.OpenAccount(
                        principal=BENCH_PRINCIPAL,
                        owner=BENCH_PRINCIPAL.principal_id,
                        command_id=uuid.uuid4().hex,
                        dedup_id="open",
                        account_id=f"m{index}",
                        currency="USD",
                    )
                    for index in range(opened, chunk_end(opened, total=args.accounts, checkpoint=args.checkpoint))
                ]
                # Fire and forget, then wait for the last one: the worker works through the backlog.
                for command in batch[:-1]:
                    produce_when_room(
                        producer,
                        f"{settings.topic_prefix}.commands",
                        codec.encode(command),
                        command.account_id.encode(),
                        wait_s=0.01,
                    )
                producer.flush(120)
                driver.run("tail", batch[-1:], timeout_s=600)
                opened += len(batch)
                if opened % args.checkpoint == 0 or opened == args.accounts:
                    samples.append((opened, rss_mb(pid)))
                    rocksdb = worker_metrics(worker.settings.worker_web_port)["rocksdb"]
                    print(
                        f"{opened:>10,} accounts  worker RSS {samples[-1][1]:7.1f} MiB  "
                        f"({opened / (time.monotonic() - started):,.0f} opens/s)  RocksDB: "
                        + ", ".join(f"{name} {value / 2**20:.1f} MiB" for name, value in rocksdb.items()),
                        flush=True,
                    )
            driver.close()
            at_checkpoint = next(mb for count, mb in samples if count == args.checkpoint)
            final = samples[-1][1]
            largest = max(mb for count, mb in samples if count >= args.checkpoint)
            print(
                f"\nRSS at {args.checkpoint:,} accounts: {at_checkpoint:.1f} MiB; "
                f"at {args.accounts:,}: {final:.1f} MiB "
                f"({(final / at_checkpoint - 1) * 100:+.1f}%); largest from {args.checkpoint:,} on: {largest:.1f} MiB "
                f"({(largest / at_checkpoint - 1) * 100:+.1f}%); "
                f"{args.accounts / (time.monotonic() - started):,.0f} opens/s"
            )
        finally:
            stack.stop_all()


if __name__ == "__main__":
    main()
