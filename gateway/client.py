"""A client of the command side: produce commands, get their results.

Results are correlated by command id. The client reads every partition of the results
topic from the end it found at start (read_committed), so each result it waits for is
seen exactly once; results of other clients' commands are skipped. Used by the HTTP
gateway, the demo and the benchmarks.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from codec import Codec
from codec.bundle import BUNDLE_COMMANDS_MAX
from codec.bundling import bundle_of, by_partition
from foundation.clients import kafka_config
from foundation.consuming import retry_transient, take_available
from foundation.producing import flush, produce_when_room
from foundation.schema_registry import codec_for
from foundation.settings import Settings
from ledger.audit import AuditEvent
from ledger.commands import Command
from ledger.events import CommandResult
from topologies import partition_for

log = logging.getLogger(__name__)
READ_BATCH_MESSAGES = 5000
RESULTS_FETCH_WAIT_MS = 100  # the longest a fetch of results waits at the broker while none is readable


class PendingLimitError(RuntimeError):
    """Too many commands are waiting for results; try again later."""


class CommandIdPendingError(RuntimeError):
    """A command with the same id already waits for its result here."""


class DeliveryError(RuntimeError):
    """Kafka did not take the command (it was never produced, or its delivery failed)."""


class LedgerClient:
    def __init__(self, settings: Settings, *, codec: Codec | None = None, pending_max: int | None = None) -> None:
        self.settings = settings
        self.codec = codec or codec_for(settings)
        self.topology = settings.topology()
        self.pending_max = pending_max or settings.gateway_pending_max
        self._pending: dict[str, concurrent.futures.Future[CommandResult]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._producer = Producer(
            {
                **kafka_config(settings),
                "acks": "all",
                "enable.idempotence": True,
                "partitioner": "murmur2_random",  # the partitioner Kafka's Java client and the workers use
                "linger.ms": 1,
            }
        )
        self._consumer = Consumer(
            {
                **kafka_config(settings),
                "group.id": f"{settings.topic_prefix}.client",  # assign() only: never joins the group
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                # The broker answers a waiting fetch as soon as a commit's markers make results
                # readable: the wait bounds only the empty fetches of an idle gateway (at 5 ms,
                # about 200 a second from every replica), not how soon a result arrives.
                "fetch.wait.max.ms": RESULTS_FETCH_WAIT_MS,
            }
        )
        results = self.topology.results
        # Results are read from the ends as they are now, fixed before any command is sent
        # (OFFSET_END would be resolved later, and a quick result could fall before it).
        ends = [
            TopicPartition(results.name, partition, retry_transient(functools.partial(self._end, partition)))
            for partition in range(results.partitions)
        ]
        self._consumer.assign(ends)
        self._reader = threading.Thread(target=self._read_results, name="results-reader", daemon=True)
        self._reader.start()

    def _end(self, partition: int) -> int:
        low_high: tuple[int, int] = self._consumer.get_watermark_offsets(
            TopicPartition(self.topology.results.name, partition), timeout=10
        )
        return low_high[1]

    def submit(self, command: Command) -> concurrent.futures.Future[CommandResult]:
        """Produce a command; the future resolves with its final result, or fails with
        DeliveryError if Kafka does not take the command. Raises EncodeError for a command
        the codec cannot carry, PendingLimitError and CommandIdPendingError; the pending
        slot is released on every path that ends without a result."""
        value = self.codec.encode(command)
        future: concurrent.futures.Future[CommandResult] = concurrent.futures.Future()
        command_id = command.command_id
        with self._lock:
            if len(self._pending) >= self.pending_max:
                raise PendingLimitError(f"{self.pending_max} commands already wait for results")
            if command_id in self._pending:
                raise CommandIdPendingError(f"a command with id {command_id} already waits for its result")
            self._pending[command_id] = future

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                self._fail(command_id, future, DeliveryError(str(error)))

        try:
            self._produce_value(value, command.routing_key, on_delivery=delivered)
        except Exception as error:  # KafkaException, or anything else: the slot is released first
            self._fail(command_id, future, DeliveryError(str(error)))
            raise DeliveryError(str(error)) from error
        return future

    def submit_bundle(self, commands: Sequence[Command]) -> list[concurrent.futures.Future[CommandResult]]:
        """Bulk submit: the commands in CommandBundles, one per partition they route to (at
        most BUNDLE_COMMANDS_MAX each); a future per command, in order, as `submit` gives.
        Raises EncodeError, PendingLimitError and CommandIdPendingError before anything is
        produced (a command id twice in `commands` is pending twice)."""
        partitions = self.topology.commands.partitions
        bundles = by_partition(
            commands, partition_of=lambda key: partition_for(key, partitions), size=BUNDLE_COMMANDS_MAX
        )
        values = [self.codec.encode(bundle_of(self.codec, str(uuid.uuid4()), bundle)) for bundle in bundles]
        futures: dict[str, concurrent.futures.Future[CommandResult]] = {}
        with self._lock:
            if len(self._pending) + len(commands) > self.pending_max:
                raise PendingLimitError(f"{len(commands)} more commands would exceed {self.pending_max} waiting")
            for command in commands:
                if command.command_id in self._pending or command.command_id in futures:
                    raise CommandIdPendingError(f"a command with id {command.command_id} already waits for its result")
                futures[command.command_id] = concurrent.futures.Future()
            self._pending.update(futures)
        for index, (bundle, value) in enumerate(zip(bundles, values, strict=True)):
            try:
                self._produce_bundle(bundle, value, futures)
            except DeliveryError as error:  # the bundles not produced release their slots too
                for unsent in bundles[index + 1 :]:
                    for command in unsent:
                        self._fail(command.command_id, futures[command.command_id], error)
                raise
        return [futures[command.command_id] for command in commands]

    def _produce_bundle(
        self, bundle: list[Command], value: bytes, futures: dict[str, concurrent.futures.Future[CommandResult]]
    ) -> None:
        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                for command in bundle:
                    self._fail(command.command_id, futures[command.command_id], DeliveryError(str(error)))

        try:
            self._produce_value(value, bundle[0].routing_key, on_delivery=delivered)
        except Exception as error:  # KafkaException, or anything else: the slots are released first
            for command in bundle:
                self._fail(command.command_id, futures[command.command_id], DeliveryError(str(error)))
            raise DeliveryError(str(error)) from error

    def send(self, command: Command) -> concurrent.futures.Future[bool]:
        """Produce a command without waiting for its result; the future resolves (True) once
        Kafka has it (acks=all), or fails with DeliveryError."""
        value = self.codec.encode(command)
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()

        def delivered(error: Any, message: Any) -> None:
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
                if error is not None:
                    future.set_exception(DeliveryError(str(error)))
                else:
                    future.set_result(True)

        try:
            self._produce_value(value, command.routing_key, on_delivery=delivered)
        except KafkaException as error:
            raise DeliveryError(str(error)) from error
        return future

    def _fail(self, command_id: str, future: concurrent.futures.Future[CommandResult], error: DeliveryError) -> None:
        with self._lock:
            if self._pending.get(command_id) is future:
                del self._pending[command_id]
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
            future.set_exception(error)

    def produce(self, command: Command, *, on_delivery: Any = None) -> None:
        """Produce without waiting for a result (fire and forget, or for results read elsewhere)."""
        self._produce_value(self.codec.encode(command), command.routing_key, on_delivery=on_delivery)

    def audit(self, event: AuditEvent) -> None:
        """Put an audit event on the audit topic (not in a transaction; a failed delivery is logged)."""

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                log.error("an audit event of %s was not delivered: %s", event.action, error)

        produce_when_room(
            self._producer,
            self.topology.audit.name,
            self.codec.encode(event),
            event.account_id.encode(),
            wait_s=0.01,
            on_delivery=delivered,
        )
        self._producer.poll(0)

    def _produce_value(self, value: bytes, routing_key: str, *, on_delivery: Any) -> None:
        produce_when_room(
            self._producer,
            self.topology.commands.name,
            value,
            routing_key.encode(),
            wait_s=0.01,
            on_delivery=on_delivery,
        )
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        flush(self._producer, timeout_s)

    def request(self, command: Command, timeout_s: float = 30.0) -> CommandResult:
        future = self.submit(command)
        self.flush(timeout_s)
        return future.result(timeout_s)

    def forget(self, command_id: str) -> None:
        with self._lock:
            self._pending.pop(command_id, None)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        self._stop.set()
        self._reader.join(5)
        flush(self._producer, 10)
        self._consumer.close()

    def _read_results(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0)  # delivery reports (failed deliveries release their slots)
            messages = take_available(self._consumer, READ_BATCH_MESSAGES, 0.05)
            if not messages:
                continue
            resolved: list[tuple[concurrent.futures.Future[CommandResult], CommandResult]] = []
            with self._lock:
                for message in messages:
                    if message.error() is not None:
                        continue
                    key = message.key()
                    future = self._pending.pop(key.decode(), None) if key is not None else None
                    if future is not None:
                        resolved.append((future, self.codec.decode(message.value() or b"")))
            for future, result in resolved:
                _resolve(future, result)


def _resolve(future: concurrent.futures.Future[CommandResult], result: CommandResult) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled or failed meanwhile
        future.set_result(result)


def wait_all(futures: list[concurrent.futures.Future[CommandResult]], timeout_s: float) -> list[CommandResult]:
    deadline = time.monotonic() + timeout_s
    return [future.result(max(0.0, deadline - time.monotonic())) for future in futures]
