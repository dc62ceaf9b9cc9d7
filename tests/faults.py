"""What the fault-injection tests share: a funded mixed workload, a paced producer of it,
and the real producer of a worker with chosen calls made to fail.

Faults are produced for real wherever the machine allows: kill -9 and SIGSTOP/SIGCONT of
real processes, brokers killed and restarted. Only the transaction failures librdkafka
cannot be made to produce on demand are injected, by `FailingCalls` around the worker's
real transactional producer: the transaction it fails is really open, so the worker's
abort really aborts it on the broker.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from bench.workloads import Ids, make_accounts, mixed, openings
from codec import Codec
from foundation.settings import Settings
from ledger import commands
from streamwallet.stack import ManagedProcess

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
    funding = [
        commands.Deposit(
            command_id=ids(),
            dedup_id="seed",
            account_id=account,
            amount=FUNDING_MINOR,
            currency=chosen.currency[account],
        )
        for account in chosen.ids
    ]
    return openings(chosen, ids, rng=rng) + funding + mixed(chosen, ids, rng, count), chosen.ids


class Streamer:
    """Produces a workload to the commands topic at about `rate_per_s`, on a thread."""

    def __init__(self, settings: Settings, workload: list[commands.Command], *, rate_per_s: float) -> None:
        self.settings = settings
        self.workload = workload
        self.rate_per_s = rate_per_s
        self.sent = 0
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
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout_s: float = 600.0) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("the workload is still being produced")

    def _run(self) -> None:
        topic = f"{self.settings.topic_prefix}.commands"
        chunk = 50
        started = time.monotonic()
        for index, command in enumerate(self.workload):
            while True:
                try:
                    self._producer.produce(topic, self._codec.encode(command), command.routing_key.encode())
                    break
                except BufferError:
                    self._producer.poll(0.1)
            self.sent = index + 1
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
