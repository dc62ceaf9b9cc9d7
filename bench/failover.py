"""Fail-over time: from kill -9 of a worker to the first result for a command, sent after
the kill, on one of the partitions that worker owned.

Two workers under a steady load of deposits on every partition. Scenario "takeover":
the killed worker stays down, so the other takes its partitions once the group notices
(session timeout) and the dead worker's open transaction is aborted (transaction
timeout). Scenario "restart": the killed worker is restarted at once and, being a static
member, takes its partitions back without a rebalance.

    python -m bench.failover [--rounds 3] [--session-timeout-ms 6000] [--transaction-timeout-ms 10000]
                             [--stock-broker-timeouts]

The takeover waits for the broker to abort the dead worker's transaction: it checks for
timed-out transactions every `transaction.abort.timed.out.transaction.cleanup.interval.ms`,
1 s on the local clusters and 10 s on a stock broker. `--stock-broker-timeouts` runs on a
broker of its own with Kafka's defaults for that interval and for broker.session.timeout.ms.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.principal import BENCH_PRINCIPAL
from bench.run_topics import run_topics
from bench.workloads import Ids, make_accounts, openings
from codec import Codec
from deploy.local import kafka
from foundation.consuming import take_available
from foundation.settings import Settings
from gateway.client import LedgerClient, wait_all
from ledger import commands
from streamwallet.stack import ManagedProcess, Stack

LOAD_PER_S = 400
STOCK_BROKER_PORT = 29650
STOCK_TIMEOUTS = {  # Kafka's defaults, which deploy/local/kafka.py shortens for local runs
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": 10_000,
    "broker.session.timeout.ms": 9_000,
    "broker.heartbeat.interval.ms": 2_000,
}


class Load:
    """Deposits at a steady rate on every partition; records when each result arrived."""

    def __init__(self, settings: Settings, accounts: list[str]) -> None:
        self.settings = settings
        self.codec = Codec()
        self.accounts = accounts
        self.sent_at: dict[str, tuple[float, str]] = {}  # command id -> (send time, account)
        self.first_result_after: dict[str, float] = {}
        self._results: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "partitioner": "murmur2_random",
                "acks": "all",
                "linger.ms": 1,
            }
        )
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "group.id": "failover",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 5,
            }
        )
        topic = f"{settings.topic_prefix}.results"
        self._consumer.assign(
            [
                TopicPartition(topic, p, self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in range(settings.partitions)
            ]
        )
        self._threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _send(self) -> None:
        index = 0
        while not self._stop.is_set():
            account = self.accounts[index % len(self.accounts)]
            command = commands.Deposit(
                principal=BENCH_PRINCIPAL,
                command_id=uuid.uuid4().hex,
                dedup_id=uuid.uuid4().hex,
                account_id=account,
                amount=1,
                currency="USD",
            )
            with self._lock:
                self.sent_at[command.command_id] = (time.monotonic(), account)
            self._producer.produce(
                f"{self.settings.topic_prefix}.commands", self.codec.encode(command), account.encode()
            )
            self._producer.poll(0)
            index += 1
            time.sleep(1 / LOAD_PER_S)

    def _read(self) -> None:
        while not self._stop.is_set():
            for message in take_available(self._consumer, 1000, 0.05):
                key = message.key()
                if message.error() is None and key is not None:
                    with self._lock:
                        self._results.append((time.monotonic(), key.decode()))

    def first_result(self, *, after: float, accounts: set[str], timeout_s: float = 60.0) -> float:
        """Seconds from `after` to the first result of a command sent after it on `accounts`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                for received, command_id in self._results:
                    sent = self.sent_at.get(command_id)
                    if sent is not None and sent[0] > after and sent[1] in accounts:
                        return received - after
            time.sleep(0.01)
        raise TimeoutError("no result on the victim's partitions")

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._consumer.close()


def owned_partitions(worker: ManagedProcess) -> list[int]:
    import urllib.request

    port = worker.settings.worker_web_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics.json", timeout=5) as response:
        partitions: list[int] = json.loads(response.read())["owned_partitions"]
        return partitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--session-timeout-ms", type=int, default=None)
    parser.add_argument("--transaction-timeout-ms", type=int, default=None)
    parser.add_argument(
        "--stock-broker-timeouts",
        action="store_true",
        help="run on a broker of its own with Kafka's default abort cleanup interval (10 s) and broker session (9 s)",
    )
    args = parser.parse_args()
    base = Settings.from_environment()
    if args.stock_broker_timeouts:
        cluster = kafka.start(name="failover-stock", base_port=STOCK_BROKER_PORT, broker_overrides=STOCK_TIMEOUTS)
        base = dataclasses.replace(base, bootstrap_servers=cluster.bootstrap_servers)
    elif "STREAMWALLET_BOOTSTRAP_SERVERS" not in os.environ:
        kafka.start(name="dev", base_port=int(base.bootstrap_servers.rsplit(":", 1)[1]))
    overrides: dict[str, Any] = {}
    if args.session_timeout_ms:
        overrides |= {
            "session_timeout_ms": args.session_timeout_ms,
            "heartbeat_interval_ms": max(100, args.session_timeout_ms // 6),
        }
    if args.transaction_timeout_ms:
        overrides["transaction_timeout_ms"] = args.transaction_timeout_ms
    run_dir = Path(tempfile.mkdtemp(prefix="streamwallet-failover-"))
    settings = dataclasses.replace(
        base, topic_prefix=f"fo{uuid.uuid4().hex[:6]}", data_dir=run_dir / "data", worker_web_port=16300, **overrides
    )
    with run_topics(settings):  # deleted when the run ends (bench/run_topics.py)
        stack = Stack(settings, run_dir)
        workers = [stack.worker(1).start(), stack.worker(2).start()]
        try:
            for worker in workers:
                worker.wait_ready()
            time.sleep(2)  # let the group settle with both members
            accounts = make_accounts("fo", 64, partitions=settings.partitions, currencies=("USD",))
            client = LedgerClient(settings)
            wait_all([client.submit(command) for command in openings(accounts, Ids("fo"))], 60)
            client.close()
            load = Load(settings, accounts.ids)
            time.sleep(2)
            figures: dict[str, list[float]] = {"takeover": [], "restart": []}
            for _ in range(args.rounds):
                for scenario in ("takeover", "restart"):
                    victim = workers[1]
                    partitions = set(owned_partitions(victim))
                    victim_accounts = {a for a in accounts.ids if accounts.partition[a] in partitions}
                    killed_at = time.monotonic()
                    victim.kill()
                    if scenario == "restart":
                        victim.start()
                    figures[scenario].append(load.first_result(after=killed_at, accounts=victim_accounts))
                    if scenario == "takeover":
                        victim.start()
                    victim.wait_ready()
                    time.sleep(settings.session_timeout_ms / 1000 + 3)  # the group settles again
            load.close()
            print(
                f"\nfail-over, 2 workers, {settings.partitions} partitions, session.timeout.ms="
                f"{settings.session_timeout_ms}, transaction.timeout.ms={settings.transaction_timeout_ms}, "
                f"{LOAD_PER_S} deposits/s, abort cleanup interval "
                f"{'10 s (Kafka default)' if args.stock_broker_timeouts else '1 s (local clusters)'}"
            )
            for scenario, seconds in figures.items():
                print(
                    f"  {scenario:<9} kill -9 -> first result on its partitions: "
                    f"median {statistics.median(seconds):.2f}s, max {max(seconds):.2f}s  "
                    f"({', '.join(f'{s:.2f}' for s in seconds)})"
                )
        finally:
            stack.stop_all()
            if args.stock_broker_timeouts:
                kafka.stop(name="failover-stock", wipe=True)


if __name__ == "__main__":
    main()
