"""The exactly-once loop that runs a worker's shards: consume, decide, produce, commit.

One iteration is one Kafka transaction:
    1. consume a batch of commands and legs (read_committed) from the partitions this
       worker owns;
    2. hand each message to its partition's Shard; produce the events, results and legs
       it returns, and a Tick for every partition whose clock is due to advance;
    3. produce the changelog records of every state change (staged, not yet in RocksDB);
    4. add the consumed offsets to the transaction (KIP-447: fenced by the group
       generation, so a worker that lost its partitions cannot commit them);
    5. commit; only then write the staged state to RocksDB.
So the offsets, the state change and every output of a message commit together or not
at all. A crash before 5 loses nothing (the batch is consumed again from the committed
offsets, and RocksDB never saw its writes); a crash after 5 but before the RocksDB write
is repaired by restore, which replays the changelog from the local checkpoint.
An abortable error aborts the transaction, drops the staged state and rewinds the
consumer to the batch's first offsets; a fatal one (fenced producer) stops the worker.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicCollection,
)
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from codec import Codec, DecodeError, DecodeErrorCode
from codec.deadletter import DEAD_LETTER_VALUE_BYTES_MAX, DeadLetter
from foundation.clients import kafka_config
from foundation.consuming import retry_transient, take_available
from foundation.schema_registry import codec_for
from foundation.settings import Settings
from ledger import legs
from ledger.accounts import Account
from ledger.commands import COMMAND_TYPES
from ledger.errors import InvariantViolation
from ledger.shard import Outcome, Shard, ShardConfig
from ledger.state import Table
from streams.store import LocalState, PartitionStore, changelog_key, partition_prefix
from topologies import Topology, partition_for

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 10.0
CHECKPOINT_INTERVAL_S = 10.0
RESTORE_BATCH_MESSAGES = 10_000
# A checkpoint older than this may predate tombstones that compaction has since removed
# (delete.retention.ms is a day by default): such a partition is restored from scratch.
CHECKPOINT_AGE_MAX_MS = 12 * 3600 * 1000
TRANSACTION_RETRIES_MAX = 10
GC_THRESHOLDS = (50_000, 50, 1_000)
_LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]


def _coordinates(message: Message) -> tuple[str, int, int]:
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None, "a consumed message has all three"
    return topic, partition, offset


class NotOwnedError(LookupError):
    """The partition of the key belongs to another worker."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"partition {partition} belongs to another worker")
        self.partition = partition


@dataclasses.dataclass(slots=True)
class ProcessorMetrics:
    messages: int = 0
    transactions: int = 0
    aborts: int = 0
    dead_letters: int = 0
    events: int = 0
    results: int = 0
    legs: int = 0
    restored_records: int = 0
    rebalances: int = 0
    last_restore_s: float = 0.0
    transaction_seconds: float = 0.0  # from consumed batch to RocksDB written, summed
    commit_seconds: float = 0.0  # in commit_transaction, summed
    batch_messages_max: int = 0
    owned_partitions: list[int] = dataclasses.field(default_factory=list)


class Decider(Protocol):
    """What the loop asks to decide each message of a partition: the ledger's Shard, or a
    stand-in (the pass-through baseline of the benchmarks)."""

    def handle(self, message: Any, *, timestamp_ms: int) -> Outcome: ...


DeciderFactory = Callable[[PartitionStore, Callable[[str], bool]], Decider]


@dataclasses.dataclass(slots=True)
class _OwnedShard:
    partition: int
    store: PartitionStore
    shard: Decider
    next_tick_s: float


def consumer_group(settings: Settings) -> str:
    return f"{settings.topic_prefix}.ledger"


def transactional_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}.ledger.{settings.worker_id}"


class LedgerProcessor:
    """The single writer of the shards of the partitions this worker owns."""

    def __init__(
        self, settings: Settings, *, codec: Codec | None = None, decider: DeciderFactory | None = None
    ) -> None:
        self.settings = settings
        self.topology = Topology(
            prefix=settings.topic_prefix,
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            min_insync_replicas=settings.min_insync_replicas,
        )
        self.codec = codec or codec_for(settings)
        self.metrics = ProcessorMetrics()
        self._local: LocalState | None = None  # opened by run(): no I/O at construction
        self.shard_config = ShardConfig(
            retention_ms=settings.retention_ms,
            retained_entries_max=settings.retained_entries_max,
            batch_timeout_ms=settings.batch_timeout_ms,
        )
        self._shards: dict[int, _OwnedShard] = {}
        self._decider = decider or self._ledger_shard
        self._commands_topic = self.topology.commands.name
        self._legs_topic = self.topology.legs.name
        self._events_topic = self.topology.events.name
        self._results_topic = self.topology.results.name
        self._changelog_topic = self.topology.changelog.name
        self._deadletter_topic = self.topology.deadletter.name
        self._consumer: Any = None
        self._producer: Any = None
        self._admin: Any = None
        self._changelog_topic_id = ""
        self._restore_consumer: Any = None
        self._next_checkpoint_s = 0.0
        self.ready = threading.Event()  # set once the first assignment is restored

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._local is not None

    @property
    def local(self) -> LocalState:
        assert self._local is not None, "the processor is not running"
        return self._local

    def run(self, stop: threading.Event) -> None:
        # The loop allocates many short-lived objects and keeps a large, long-lived cache:
        # collect the young generations rarely and the old one almost never (reference
        # counting frees nearly everything; full collections over the cache are p99 pauses).
        # Undone on return: a processor run inside another program (the tests) leaves its
        # collector as it found it, and what was frozen can be collected again.
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            self._run(stop)
        finally:
            gc.unfreeze()
            gc.set_threshold(*thresholds)

    def _run(self, stop: threading.Event) -> None:
        self._local = LocalState(
            self.settings.data_dir / "ledger" / self.settings.worker_id,
            self.codec,
            cache_entries=max(1000, self.settings.account_cache_entries // self.settings.partitions),
        )
        self._admin = AdminClient({**kafka_config(self.settings)})
        self._changelog_topic_id = self._topic_id(self._changelog_topic)
        self._producer = Producer(self._producer_config())
        # Fences an earlier incarnation of this worker and aborts its open transaction.
        self._producer.init_transactions(self.settings.transaction_timeout_ms / 1000 * 3)
        self._restore_consumer = Consumer(self._restore_consumer_config())
        self._consumer = Consumer(self._consumer_config())
        self._consumer.subscribe(
            [self._commands_topic, self._legs_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        try:
            while not stop.is_set():
                self._iteration()
        finally:
            self._close()

    def _topic_id(self, name: str) -> str:
        description = self._admin.describe_topics(TopicCollection([name]), request_timeout=ADMIN_TIMEOUT_S)
        return str(description[name].result().topic_id)

    def _close(self) -> None:
        self._checkpoint_all()
        try:
            self._consumer.close()  # leaves the group (a static member only on session timeout)
        finally:
            self._restore_consumer.close()
            self._producer.flush(5)
            self.local.close()

    # -- one transaction --------------------------------------------------------------------

    def _iteration(self) -> None:
        # A batch never waits to fill up: under load batches grow by themselves.
        messages = take_available(
            self._consumer, self.settings.max_batch_messages, self.settings.poll_timeout_ms / 1000
        )
        now_s = time.monotonic()
        due_ticks = [owned for owned in self._shards.values() if owned.next_tick_s <= now_s]
        if not messages and not due_ticks:
            self._maybe_checkpoint(now_s)
            return
        first_offsets: dict[tuple[str, int], int] = {}
        next_offsets: dict[tuple[str, int], int] = {}
        self._producer.begin_transaction()
        try:
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                topic, partition, offset = _coordinates(message)
                first_offsets.setdefault((topic, partition), offset)
                next_offsets[(topic, partition)] = offset + 1
                self._process(message)
            for owned in due_ticks:
                owned.next_tick_s = now_s + self.settings.tick_interval_ms / 1000
                self._produce(
                    self._legs_topic,
                    self.codec.encode(legs.Tick(worker_id=self.settings.worker_id)),
                    key=None,
                    partition=owned.partition,
                )
            changes = {owned.partition: owned.store.staged_changes() for owned in self._shards.values()}
            for partition, records in changes.items():
                for key, value in records:
                    self._produce(self._changelog_topic, value, key=key, partition=partition)
            if next_offsets:
                self._producer.send_offsets_to_transaction(
                    [KafkaPartition(topic, partition, offset) for (topic, partition), offset in next_offsets.items()],
                    self._consumer.consumer_group_metadata(),
                    ADMIN_TIMEOUT_S,
                )
            committing_s = time.monotonic()
            self._commit()
            self.metrics.commit_seconds += time.monotonic() - committing_s
        except KafkaException as exception:
            error = exception.args[0]
            # produce() reports a transaction that a failed background send has already made
            # abortable as _STATE, without the abort flag. Aborting is right for both; if the
            # state is fatal instead, abort_transaction raises and the worker stops.
            if not (error.txn_requires_abort() or error.code() == KafkaError._STATE):
                raise
            log.warning("transaction aborted (%s); the batch will be consumed again", error)
            self._abort(first_offsets)
            return
        for partition, records in changes.items():
            if records or self._shards[partition].store.has_staged():
                self._shards[partition].store.apply_committed(records)
        self.metrics.transactions += 1
        self.metrics.messages += len(messages)
        self.metrics.transaction_seconds += time.monotonic() - now_s
        self.metrics.batch_messages_max = max(self.metrics.batch_messages_max, len(messages))
        self._maybe_checkpoint(now_s)

    def _commit(self) -> None:
        for _ in range(TRANSACTION_RETRIES_MAX):
            try:
                self._producer.commit_transaction(self.settings.transaction_timeout_ms / 1000)
                return
            except KafkaException as exception:
                if not exception.args[0].retriable():
                    raise
        raise RuntimeError(f"commit_transaction still failing after {TRANSACTION_RETRIES_MAX} retries")

    def _abort(self, first_offsets: dict[tuple[str, int], int]) -> None:
        self._producer.abort_transaction(self.settings.transaction_timeout_ms / 1000)
        self.metrics.aborts += 1
        for owned in self._shards.values():
            owned.store.discard_staged()
        owned_partitions = set(self._shards)
        for (topic, partition), offset in first_offsets.items():
            if partition in owned_partitions:
                self._consumer.seek(KafkaPartition(topic, partition, offset))

    def _process(self, message: Message) -> None:
        topic, partition, _ = _coordinates(message)
        owned = self._shards.get(partition)
        if owned is None:
            raise InvariantViolation(f"message for partition {partition}, which this worker does not own")
        value = message.value()
        is_command = topic == self._commands_topic
        try:
            if value is None:
                raise DecodeError(DecodeErrorCode.UNDECODABLE, "the message has no value")
            if len(value) > self.settings.message_bytes_max:
                raise DecodeError(
                    DecodeErrorCode.TOO_LARGE, f"{len(value)} bytes; at most {self.settings.message_bytes_max} accepted"
                )
            decoded = self.codec.decode(value, expected=COMMAND_TYPES if is_command else legs.LEG_TYPES)
        except DecodeError as error:
            self._dead_letter(message, error)
            return
        outcome = owned.shard.handle(decoded, timestamp_ms=message.timestamp()[1])
        encode = self.codec.encode
        for event in outcome.events:
            self._produce(
                self._events_topic,
                encode(event),
                key=event.account_id.encode(),
                partition=partition,
                timestamp=event.occurred_at_ms,
            )
        for result in outcome.results:
            # On the deciding shard's partition, not the key's: a transaction that touches fewer
            # partitions commits faster (clients read every partition of the results topic).
            self._produce(self._results_topic, encode(result), key=result.command_id.encode(), partition=partition)
        for leg in outcome.legs:
            self._produce(self._legs_topic, encode(leg), key=leg.routing_key.encode())
        self.metrics.events += len(outcome.events)
        self.metrics.results += len(outcome.results)
        self.metrics.legs += len(outcome.legs)

    def _dead_letter(self, message: Message, error: DecodeError) -> None:
        topic, partition, offset = _coordinates(message)
        value = message.value()
        letter = DeadLetter(
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            key=message.key(),
            value=None if value is None else value[:DEAD_LETTER_VALUE_BYTES_MAX],
            reason_code=error.code.value,
            reason=error.reason,
            worker_id=self.settings.worker_id,
            failed_at_ms=int(time.time() * 1000),
        )
        log.warning("dead letter from %s/%d@%d: %s", topic, partition, offset, error)
        self._produce(self._deadletter_topic, self.codec.encode(letter), key=message.key())
        self.metrics.dead_letters += 1

    def _produce(
        self, topic: str, value: bytes | None, *, key: bytes | None, partition: int = -1, timestamp: int = 0
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition=partition, timestamp=timestamp)
                return
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: let librdkafka send some

    # -- reads --------------------------------------------------------------------------------

    def committed_account(self, account_id: str) -> tuple[int, Account | None]:
        """(partition, the account as committed) for an account of a partition this worker
        owns; NotOwnedError otherwise. Safe from other threads: reads RocksDB, not the
        loop's caches."""
        partition = partition_for(account_id, self.settings.partitions)
        if partition not in self._shards:
            raise NotOwnedError(partition)
        raw = self.local.db.get(partition_prefix(partition) + changelog_key(Table.ACCOUNTS, account_id))
        return partition, None if raw is None else self.codec.decode(raw)

    # -- partitions come and go ---------------------------------------------------------------

    def _on_assign(self, consumer: Any, assigned: list[KafkaPartition]) -> None:
        started = time.monotonic()
        numbers = sorted({tp.partition for tp in assigned if tp.topic == self._commands_topic})
        legs_numbers = sorted({tp.partition for tp in assigned if tp.topic == self._legs_topic})
        if numbers != legs_numbers:
            raise InvariantViolation(
                f"commands partitions {numbers} and legs partitions {legs_numbers} are not co-partitioned; "
                "the range assignor and equal partition counts guarantee it"
            )
        self.metrics.rebalances += 1
        self._restore(numbers)
        for partition in numbers:
            store = PartitionStore(self.local, partition)
            self._shards[partition] = _OwnedShard(
                partition=partition,
                store=store,
                shard=self._decider(store, self._is_local_to(partition)),
                next_tick_s=0.0,
            )
        self.metrics.owned_partitions = sorted(self._shards)
        self.metrics.last_restore_s = time.monotonic() - started
        log.info("assigned partitions %s (restored in %.2fs)", numbers, self.metrics.last_restore_s)
        self.ready.set()

    def _on_revoke(self, consumer: Any, revoked: list[KafkaPartition]) -> None:
        numbers = sorted({tp.partition for tp in revoked} & set(self._shards))
        assert not any(self._shards[p].store.has_staged() for p in numbers), "revoked only between transactions"
        self._checkpoint(numbers)
        for partition in numbers:
            del self._shards[partition]
        self.metrics.owned_partitions = sorted(self._shards)
        log.info("revoked partitions %s", sorted({tp.partition for tp in revoked}))

    def _ledger_shard(self, store: PartitionStore, is_local: Callable[[str], bool]) -> Decider:
        return Shard(store=store, config=self.shard_config, is_local=is_local)

    def _is_local_to(self, partition: int) -> Callable[[str], bool]:
        partitions = self.settings.partitions

        def is_local(key: str) -> bool:
            return partition_for(key, partitions) == partition

        return is_local

    # -- restore and checkpoints ---------------------------------------------------------------

    def _restore(self, partitions: list[int]) -> None:
        """Bring RocksDB up to the end of the changelog partitions, all at once.

        The end is the high watermark with no transaction open on the partition: a
        previous owner killed mid-transaction keeps one open until the broker aborts it
        (transaction.timeout.ms), and its fate must be known before this shard decides
        anything, or a commit that lands after the restore would be missed."""
        ends = self._stable_ends(partitions)
        now_ms = int(time.time() * 1000)
        positions: dict[int, int] = {}
        for partition in partitions:
            checkpoint = self.local.checkpoint(partition)
            if (
                checkpoint is None
                or checkpoint.topic_id != self._changelog_topic_id
                or checkpoint.offset > ends[partition]
                or now_ms - checkpoint.written_ms > CHECKPOINT_AGE_MAX_MS
            ):
                # No usable checkpoint (new here, another cluster or topic, or too old to
                # trust that no tombstone was compacted away since): start from nothing.
                self.local.wipe(partition)
                positions[partition] = 0
            else:
                positions[partition] = checkpoint.offset
        behind = {partition for partition in partitions if positions[partition] < ends[partition]}
        self._restore_consumer.assign(
            [KafkaPartition(self._changelog_topic, partition, positions[partition]) for partition in behind]
        )
        restored = 0
        try:
            while behind:
                batches: dict[int, list[tuple[bytes, bytes | None]]] = {}
                for message in self._restore_consumer.consume(RESTORE_BATCH_MESSAGES, timeout=0.1):
                    _, partition, offset = _coordinates(message)
                    error = message.error()
                    if error is None:
                        batches.setdefault(partition, []).append((message.key() or b"", message.value()))
                        positions[partition] = offset + 1
                    elif error.code() == KafkaError._PARTITION_EOF:
                        # The position moves past trailing transaction markers only here.
                        position = self._restore_consumer.position([KafkaPartition(self._changelog_topic, partition)])
                        positions[partition] = max(positions[partition], position[0].offset)
                    else:
                        raise KafkaException(error)
                for partition, batch in batches.items():
                    self.local.apply_changelog(partition, batch)
                    restored += len(batch)
                reached = [partition for partition in behind if positions[partition] >= ends[partition]]
                if reached:
                    ends.update(self._stable_ends(reached))  # a zombie may have committed meanwhile
                    behind -= {partition for partition in reached if positions[partition] >= ends[partition]}
            for partition in partitions:
                self.local.write_checkpoint(partition, ends[partition], self._changelog_topic_id)
        finally:
            self._restore_consumer.unassign()
        self.metrics.restored_records += restored

    def _stable_ends(self, partitions: list[int]) -> dict[int, int]:
        """Each partition's high watermark, once no transaction is open on it."""
        ends: dict[int, int] = {}
        waiting = list(partitions)
        while waiting:
            high_offsets = self._changelog_ends(waiting, IsolationLevel.READ_UNCOMMITTED)
            stable_offsets = self._changelog_ends(waiting, IsolationLevel.READ_COMMITTED)
            for partition in list(waiting):
                if stable_offsets[partition] >= high_offsets[partition]:
                    ends[partition] = high_offsets[partition]
                    waiting.remove(partition)
            if waiting:
                time.sleep(0.05)
        return ends

    def _maybe_checkpoint(self, now_s: float) -> None:
        if now_s >= self._next_checkpoint_s:
            self._next_checkpoint_s = now_s + CHECKPOINT_INTERVAL_S
            self._checkpoint_all()

    def _checkpoint_all(self) -> None:
        self._checkpoint(list(self._shards))

    def _checkpoint(self, numbers: list[int]) -> None:
        """Record how far RocksDB follows the changelog. Called between transactions only:
        then every committed record below the high watermark is in RocksDB."""
        if not numbers:
            return
        for partition, offset in self._changelog_ends(numbers, IsolationLevel.READ_UNCOMMITTED).items():
            self.local.write_checkpoint(partition, offset, self._changelog_topic_id)

    def _changelog_ends(self, partitions: list[int], isolation: IsolationLevel) -> dict[int, int]:
        """End offsets of changelog partitions (the high watermark, or the last stable offset
        for READ_COMMITTED), retrying while leadership settles (new topics, broker restarts)."""
        requested = {KafkaPartition(self._changelog_topic, partition): _LATEST for partition in partitions}

        def list_offsets() -> dict[int, int]:
            futures = self._admin.list_offsets(requested, isolation_level=isolation, request_timeout=ADMIN_TIMEOUT_S)
            return {tp.partition: future.result().offset for tp, future in futures.items()}

        return retry_transient(list_offsets)

    # -- client configuration -----------------------------------------------------------------

    def _producer_config(self) -> dict[str, Any]:
        return {
            **kafka_config(self.settings),
            "client.id": f"{self.settings.worker_id}-ledger",
            "transactional.id": transactional_id(self.settings),
            "transaction.timeout.ms": self.settings.transaction_timeout_ms,
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",  # Kafka's default partitioner, as Java and Faust use
            "linger.ms": 2,
            # The broker answers CONCURRENT_TRANSACTIONS until the previous commit's markers are
            # written (a few ms); librdkafka's default 100 ms back-off would add that to every batch.
            "retry.backoff.ms": 1,
            "socket.nagle.disable": True,
            "retry.backoff.max.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "message.max.bytes": 2 * 1024 * 1024,
        }

    def _consumer_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            **kafka_config(self.settings),
            "client.id": f"{self.settings.worker_id}-ledger",
            "group.id": consumer_group(self.settings),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Range assigns partition p of every subscribed topic to the same member: the
            # commands and legs of a shard are co-partitioned.
            "partition.assignment.strategy": "range",
            "session.timeout.ms": self.settings.session_timeout_ms,
            "heartbeat.interval.ms": self.settings.heartbeat_interval_ms,
            "max.poll.interval.ms": 600_000,
            "fetch.wait.max.ms": 10,
            "enable.partition.eof": False,
        }
        if self.settings.static_membership:
            config["group.instance.id"] = self.settings.worker_id
        return config

    def _restore_consumer_config(self) -> dict[str, Any]:
        return {
            **kafka_config(self.settings),
            "client.id": f"{self.settings.worker_id}-restore",
            "group.id": f"{consumer_group(self.settings)}.restore",  # never joins: assign() only
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
            "auto.offset.reset": "earliest",
        }
