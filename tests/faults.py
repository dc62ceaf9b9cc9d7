"""What the fault-injection tests share: a funded mixed workload, a paced producer of it,
and the real producer of a worker with chosen calls made to fail.

Faults are produced for real wherever the machine allows: kill -9 and SIGSTOP/SIGCONT of
real processes, brokers killed and restarted. Only the transaction failures librdkafka
cannot be made to produce on demand are injected, by `FailingCalls` around the worker's
real transactional producer: the transaction it fails is really open, so the worker's
abort really aborts it on the broker.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from bench.workloads import Ids, deposits_to_each, make_accounts, mixed, openings
from codec import Codec
from codec.bundling import bundle_of, by_partition
from deploy.local import kafka
from foundation.settings import Settings
from ledger import commands
from streamwallet.stack import ManagedProcess
from topologies import partition_for

FUNDING_MINOR = 200_000


def funded_mixed_workload(
    settings: Settings, *, accounts: int, count: int, seed: int
) -> tuple[list[commands.Command], list[str]]:
    """Open and fund `accounts` accounts, then `count` commands of every kind (same- and
    cross-partition transfers, batches, holds, duplicates, invalid ones). Returns the
    workload and the account ids."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    ids = Ids(run)
    chosen = make_accounts(f"f{run}", accounts, partitions=settings.partitions)
    funding = deposits_to_each(chosen, ids, amount=FUNDING_MINOR, dedup_id="seed")
    return openings(chosen, ids, rng=rng) + funding + mixed(chosen, ids, rng, count), chosen.ids


class Streamer:
    """Produces a workload to the commands topic at about `rate_per_s`, on a thread, to its
    end or until `stop()`; `streamed` is then what it produced, in the order produced."""

    def __init__(
        self, settings: Settings, workload: list[commands.Command], *, rate_per_s: float, bundle_size: int = 1
    ) -> None:
        self.settings = settings
        self.workload = workload
        self.rate_per_s = rate_per_s
        self.bundle_size = bundle_size  # > 1: commands go in CommandBundles of one partition (bulk submit)
        self.streamed: list[commands.Command] = []  # the commands of the messages produced
        self._stop = threading.Event()
        self._codec = Codec()
        self._producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "partitioner": "murmur2_random",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 300_000,  # through broker faults: delivered late, never dropped
            }
        )
        self._thread = threading.Thread(target=self._run, name="streamer", daemon=True)

    def start(self) -> Streamer:
        self._thread.start()
        return self

    @property
    def sent(self) -> int:
        return len(self.streamed)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Produce nothing more (a stream sized to outlast what the test does meanwhile);
        what was produced is still delivered, and `join` waits for that."""
        self._stop.set()

    def join(self, timeout_s: float = 600.0) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("the workload is still being produced")

    def _messages(self) -> list[tuple[list[commands.Command], bytes, bytes]]:
        """(commands carried, key, value) of each message to produce."""
        if self.bundle_size <= 1:
            return [([command], command.routing_key.encode(), self._codec.encode(command)) for command in self.workload]
        partitions = self.settings.partitions
        bundles = by_partition(
            self.workload, partition_of=lambda key: partition_for(key, partitions), size=self.bundle_size
        )
        return [
            (
                bundle,
                bundle[0].routing_key.encode(),
                self._codec.encode(bundle_of(self._codec, f"b{index}", bundle)),
            )
            for index, bundle in enumerate(bundles)
        ]

    def _run(self) -> None:
        topic = f"{self.settings.topic_prefix}.commands"
        chunk = 50 if self.bundle_size <= 1 else 1
        started = time.monotonic()
        for index, (carried, key, value) in enumerate(self._messages()):
            if self._stop.is_set():
                break
            while True:
                try:
                    self._producer.produce(topic, value, key)
                    break
                except BufferError:
                    self._producer.poll(0.1)
            self.streamed.extend(carried)
            if index % chunk == chunk - 1:
                self._producer.poll(0)
                ahead_s = started + self.sent / self.rate_per_s - time.monotonic()
                if ahead_s > 0:
                    time.sleep(ahead_s)
        remaining = self._producer.flush(300)
        if remaining:
            raise RuntimeError(f"{remaining} commands were not delivered")


class FailingCalls:
    """A worker's real transactional producer whose chosen calls fail with an abortable
    transaction error, as librdkafka reports a failed background send (_STATE from
    produce) or a failed commit. `fail_at` counts calls of `method` (1-based); for
    produce, only records of `topics` count."""

    def __init__(self, producer: Any, *, method: str, fail_at: Collection[int], topics: Collection[str] = ()) -> None:
        self._producer = producer
        self._method = method
        self._fail_at = set(fail_at)
        self._topics = set(topics)
        self.calls = 0
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        real: Callable[..., Any] = getattr(self._producer, name)
        if name != self._method:
            return real

        def maybe_fail(*args: Any, **kwargs: Any) -> Any:
            if self._method != "produce" or not self._topics or args[0] in self._topics:
                self.calls += 1
                if self.calls in self._fail_at:
                    self.failed += 1
                    # What librdkafka raises: produce() reports a transaction already made
                    # abortable as a plain _STATE; a failed commit says it needs an abort.
                    raise KafkaException(
                        KafkaError(KafkaError._STATE, "injected", txn_requires_abort=self._method != "produce")
                    )
            return real(*args, **kwargs)

        return maybe_fail


def pause_for(process: ManagedProcess, seconds: float) -> None:
    """SIGSTOP a process for `seconds`, then SIGCONT it: a zombie in the making (a GC pause,
    a VM stall, a network cut longer than its session)."""
    process.pause()
    try:
        time.sleep(seconds)
    finally:
        process.resume()


def log_count(process: ManagedProcess, text: str) -> int:
    return process.tail(10**9).count(text)


# -- brokers ------------------------------------------------------------------------------------

_ACTIVE_CONTROLLER = re.compile(r"\[QuorumController id=(\d+)\] Becoming the active controller at epoch (\d+)")
TRANSACTION_STATE_PARTITIONS = 16  # transaction.state.log.num.partitions of the local clusters


def active_controller(cluster: kafka.Cluster) -> int:
    """The node id of the KRaft quorum's active controller: the one that most recently
    became it (the highest epoch any node's log announces)."""
    best = (-1, -1)
    for node in cluster.nodes:
        log_path = node.data_dir / "server.log"
        if log_path.exists():
            for match in _ACTIVE_CONTROLLER.finditer(log_path.read_text(errors="replace")):
                best = max(best, (int(match.group(2)), int(match.group(1))))
    if best[1] < 0:
        raise RuntimeError("no node announced itself the active controller")
    return best[1]


def _java_string_hash(text: str) -> int:
    value = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        value = (31 * value + int(unit, 16)) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def transaction_coordinator(bootstrap_servers: str, transactional_id: str) -> int:
    """The broker coordinating a transactional id: the leader of its __transaction_state
    partition, `abs(hashCode(id)) % partitions` (Kafka's TransactionStateManager.partitionFor)."""
    hashed = _java_string_hash(transactional_id)
    partition = 0 if hashed == -(1 << 31) else abs(hashed) % TRANSACTION_STATE_PARTITIONS
    return partition_leader(bootstrap_servers, "__transaction_state", partition)


def group_coordinator(bootstrap_servers: str, group: str) -> int:
    """The broker coordinating a consumer group (its offsets and its members)."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})  # kept alive until the answer
    described = admin.describe_consumer_groups([group], request_timeout=30)[group]
    node: int = described.result().coordinator.id
    return node


def partition_leader(bootstrap_servers: str, topic: str, partition: int) -> int:
    metadata = AdminClient({"bootstrap.servers": bootstrap_servers}).list_topics(topic, timeout=10)
    leader: int = metadata.topics[topic].partitions[partition].leader
    return leader


def pause_broker(cluster: kafka.Cluster, node_id: int, seconds: float) -> None:
    """SIGSTOP a broker for `seconds`: it stops heartbeating to the quorum and answering its
    clients without closing a single connection."""
    pid = int(cluster.nodes[node_id - 1].pid_file.read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


class ResultsWatcher:
    """When each result arrived (read_committed), to measure the gaps faults cause."""

    def __init__(self, settings: Settings) -> None:
        self.arrivals: list[float] = []
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "group.id": f"watch-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
            }
        )
        self._consumer.subscribe([f"{settings.topic_prefix}.results"])
        self._thread = threading.Thread(target=self._run, name="results-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(1000, timeout=0.1):
                if message.error() is None:
                    self.arrivals.append(time.monotonic())
        self._consumer.close()

    def longest_gap_s(self, start_s: float, end_s: float) -> float:
        """The longest time without a result between `start_s` and `end_s` (monotonic)."""
        inside = [start_s, *(moment for moment in self.arrivals if start_s <= moment <= end_s), end_s]
        return max(later - earlier for earlier, later in itertools.pairwise(inside))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def dump_stacks(processes: list[ManagedProcess]) -> None:
    """Append every live process's Python stacks to its log (py-spy), to see where a process
    that stopped making progress is waiting. Diagnostics only: silent if py-spy is absent."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    for process in processes:
        if process.process is None or not process.alive or not Path(py_spy).exists():
            continue
        dumped = subprocess.run(
            [py_spy, "dump", "--pid", str(process.process.pid)], check=False, capture_output=True, text=True, timeout=60
        )
        with open(process.log_path, "a") as log_file:
            log_file.write(f"\n--- py-spy dump (test diagnostics)\n{dumped.stdout}{dumped.stderr}\n")
