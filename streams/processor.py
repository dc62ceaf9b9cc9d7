"""The exactly-once loop that runs a worker's shards: consume, decide, produce, commit.

One batch is one Kafka transaction, and the loop overlaps one batch's deciding with the
previous one's commit:
    1. take a batch of commands and legs (read_committed) from the partitions this worker
       owns — never messages of an assignment a rebalance has replaced;
    2. hand each message to its partition's Shard, and hold back the events, results, legs
       and audit events it returns, and a Tick for every partition on which something waits
       for time. Meanwhile the previous batch's transaction ends on a thread
       (streams/committing.py): this batch reads that batch's writes, sealed in the stores
       (streams/store.py), and stages its own on top;
    3. wait for that transaction's end. If it committed, its staged state goes to RocksDB
       and this batch goes on; if not, this batch, decided on its state, is dropped with it
       and both are consumed again (or every partition is reloaded);
    4. begin this batch's transaction; add its consumed offsets (KIP-447: fenced by the group
       generation, so a worker that lost its partitions cannot commit them) on a thread;
       produce the held records, then each consuming partition's changelog records (which
       seals its staged writes) and, last, its input positions (streams/positions.py);
    5. on the committing thread: flush the records beside the offsets' call, wait for that
       call, commit. The loop goes back to 1; step 3 of the next turn writes this batch's
       state to RocksDB once the commit has returned, and notes how far RocksDB now holds
       each changelog partition (the broker's offsets of our own records).
So the offsets, the state change and every output of a message commit together or not
at all, and nothing is produced on a state that has not committed. A crash before the
commit loses nothing (the batches are consumed again from the committed offsets, and
RocksDB never saw their writes); a crash after it but before the RocksDB write is repaired
by restore, which replays the changelog from the last checkpoint — and a checkpoint only
ever records what RocksDB really holds (streams/restore.py).

Errors (streams/transactions.py): an abortable or retriable one aborts the transaction,
drops the staged state (the batch decided on it too) and rewinds *every* partition those
batches took messages from to their first offsets, then decides them again; a fatal or
fencing error of the producer, or a commit whose outcome is unknown, replaces the producer
and reloads every owned partition from the changelog; the group fencing this worker's
consumer stops it. A rebalance callback first waits for the committing transaction
(`Ownership.before_change`). A worker that stops on an error writes no checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicCollection
from confluent_kafka import TopicPartition as KafkaPartition

from codec import Codec, DecodeError, DecodeErrorCode
from codec.bundle import BundleRefusal, CommandBundle
from codec.bundling import unbundle
from codec.deadletter import DEAD_LETTER_KEY_BYTES_MAX, DEAD_LETTER_VALUE_BYTES_MAX, DeadLetter
from foundation.clients import kafka_config
from foundation.consuming import retry_transient, take_available
from foundation.producing import flush
from foundation.schema_registry import codec_for
from foundation.settings import Settings
from ledger import legs
from ledger.commands import COMMAND_TYPES
from ledger.errors import InputRefusal, InvariantViolation
from ledger.shard import Outcome, Shard, ShardConfig
from streams import clients
from streams.assignment import OwnedShard, Ownership
from streams.committing import Committing
from streams.positions import POSITIONS_KEY, InputPositions
from streams.renewals import ConsumerRenewals
from streams.restore import Restorer
from streams.store import LocalState, PartitionStore
from streams.telemetry import Tally, WorkerTelemetry
from streams.transactions import (
    OffsetsInFlight,
    ProducerStuck,
    TransactionalProducer,
    is_abortable,
    is_fenced,
)
from topologies import partition_for
from topologies.admin import fresh_admin, verify_topics

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 10.0
GC_THRESHOLDS = (50_000, 50, 1_000)
CONSUMER_ERROR_LOG_INTERVAL_S = 5.0
# How long the worker rides out an unreachable broker, coordinator or leader before it
# gives up and stops (an orchestrator then restarts it). Brokers are replaced in seconds.
BROKER_OUTAGE_S_MAX = 120.0

# The share of the transaction timeout one transaction may spend deciding before it takes
# no more messages (producing, the offsets and the commit need the rest).
TRANSACTION_DECIDING_SHARE_MAX = 0.25
ROUTING_KEYS_CACHED_MAX = 4096  # per partition: routing keys whose partition is remembered

# What the commands topic carries: a command, or a bundle of them (bulk submit).
COMMAND_INPUT_TYPES: tuple[type, ...] = (*COMMAND_TYPES, CommandBundle)

# A record held back while its batch is decided: topic, value, key, partition, timestamp, headers.
_Held = tuple[str, bytes | None, bytes | None, int, int, list[tuple[str, bytes]] | None]

# Re-exported: tests and tools name the group and the transactional id from here.
consumer_group = clients.consumer_group
transactional_id = clients.transactional_id


@dataclasses.dataclass(slots=True)
class ProcessorMetrics:
    messages: int = 0
    transactions: int = 0
    aborts: int = 0
    producers_replaced: int = 0
    consumers_renewed: int = 0
    dead_letters: int = 0
    events: int = 0
    results: int = 0
    legs: int = 0
    restored_records: int = 0
    rebalances: int = 0
    last_restore_s: float = 0.0
    transaction_seconds: float = 0.0  # from consumed batch to RocksDB written, summed
    # Where a committed transaction's turn went, summed: deciding (the batch taken to its records
    # produced), sending (the records flushed, the offsets' call waited for), committing.
    decide_seconds: float = 0.0
    send_seconds: float = 0.0
    commit_seconds: float = 0.0  # in commit_transaction
    batch_messages_max: int = 0
    owned_partitions: list[int] = dataclasses.field(default_factory=list)


class Decider(Protocol):
    """What the loop asks to decide each message of a partition: the ledger's Shard, or a
    stand-in (the pass-through baseline of the benchmarks)."""

    def handle(self, message: Any, *, timestamp_ms: int) -> Outcome: ...

    def wants_tick(self, now_ms: int) -> bool:
        """Whether a tick stamped `now_ms` would do anything on this partition."""
        ...


DeciderFactory = Callable[[PartitionStore, Callable[[str], bool]], Decider]


def coordinates(message: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message, which has all three."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise InvariantViolation(f"a consumed message without a position: {topic}/{partition}@{offset}")
    return topic, partition, offset


@dataclasses.dataclass(slots=True)
class _Batch:
    """What one transaction took from its input, and what it produced."""

    messages: list[Message]
    tally: Tally  # what it decided, counted by the telemetry once it commits
    first: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)  # rewind points
    next: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)  # offsets to commit
    counts: ProcessorMetrics = dataclasses.field(default_factory=ProcessorMetrics)
    decided: int = 0  # inputs decided: a message, or each command of a bundle

    def __post_init__(self) -> None:
        # Every message taken, processed or not: an abort in the middle of the batch must
        # rewind the partitions whose messages were not reached too, or they are skipped.
        for message in self.messages:
            topic, partition, offset = coordinates(message)
            self.first.setdefault((topic, partition), offset)
            self.next[(topic, partition)] = offset + 1


@dataclasses.dataclass(slots=True)
class _Committing:
    """A batch whose transaction is ending on a thread while the next batch is decided."""

    batch: _Batch
    changes: dict[int, _Changes]  # for RocksDB, once it committed
    started_s: float  # when its turn took it
    end: Committing


@dataclasses.dataclass(slots=True)
class _Changes:
    """A partition's changelog records in one transaction, and where its input will be."""

    records: list[tuple[bytes, bytes | None]]
    positions: InputPositions


class LedgerProcessor:
    """The single writer of the shards of the partitions this worker owns."""

    def __init__(
        self, settings: Settings, *, codec: Codec | None = None, decider: DeciderFactory | None = None
    ) -> None:
        self.settings = settings
        self.topology = settings.topology()
        self.codec = codec or codec_for(settings)
        self.metrics = ProcessorMetrics()
        self.shard_config = ShardConfig(
            retention_ms=settings.retention_ms,
            retained_entries_max=settings.retained_entries_max,
            batch_timeout_ms=settings.batch_timeout_ms,
        )
        self._decider = decider or self._ledger_shard
        self._commands_topic = self.topology.commands.name
        self._legs_topic = self.topology.legs.name
        # Named once: the topology builds a topic's spec each time one is asked for.
        self._events_topic = self.topology.events.name
        self._results_topic = self.topology.results.name
        self._changelog_topic = self.topology.changelog.name
        self._audit_topic = self.topology.audit.name
        # Opened by run(): no I/O at construction.
        self._local: LocalState | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._transactions: TransactionalProducer | None = None
        self._ownership: Ownership | None = None
        self._restorer: Restorer | None = None
        self._delivered: dict[int, int] = {}  # changelog partition -> offset of our last record
        self._locality: dict[int, Callable[[str], bool]] = {}  # partition -> is a routing key on it
        self._carried: list[Message] = []  # taken by the last turn, left for the next (bulk submit)
        self._committing: _Committing | None = None  # the last batch, while its transaction ends
        self._held: list[_Held] = []  # the records of the batch being decided, held back
        self._reload_owned = False  # a transaction failed inside a rebalance callback
        self._carried_generation = 0  # the assignment they were taken under
        self._results_partition = 0  # where this worker's results go: its lowest owned partition
        self._next_checkpoint_s = 0.0
        self._renewals = ConsumerRenewals(settings.worker_id)  # stops a tug of war with a twin
        self.ready = threading.Event()  # set once the first assignment is restored
        self.telemetry = WorkerTelemetry(
            settings,
            commands_topic=self._commands_topic,
            shards=lambda: self._shards,
            metrics=lambda: self.metrics,
            memory=lambda: self.local.memory_bytes() if self.running else {},
            restored=lambda: 0 if self._restorer is None else self._restorer.restored_records,  # live, mid-restore
        )

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._local is not None

    @property
    def local(self) -> LocalState:
        if self._local is None:
            raise RuntimeError("the processor is not running")
        return self._local

    @property
    def _shards(self) -> dict[int, OwnedShard]:
        return {} if self._ownership is None else self._ownership.shards

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
        settings = self.settings
        self._local = LocalState(
            settings.data_dir / "ledger" / settings.worker_id,
            self.codec,
            cache_entries=max(1000, settings.account_cache_entries // settings.partitions),
        )
        clean = False
        try:
            # Refuse topics that break what the guarantees assume (replication factor,
            # min.insync.replicas, partition counts, timestamps, tombstone retention). A
            # worker restarted while the controller is away (it is asked for the configs)
            # waits for it like any broker outage rather than exiting again.
            # Each ask with a client of its own: one made during an outage can stay deaf after it
            # (topologies.admin.fresh_admin).
            retry_transient(
                lambda: verify_topics(fresh_admin(kafka_config(settings)), self.topology.worker()),
                budget_s=BROKER_OUTAGE_S_MAX,
            )
            self._transactions = TransactionalProducer(
                clients.producer_config(settings),
                init_timeout_s=settings.transaction_timeout_ms / 1000 * 3,
                budget_s=BROKER_OUTAGE_S_MAX,
            )
            self._producer = self._transactions.producer
            restore_consumer = Consumer(clients.restore_consumer_config(settings))
            self._restorer = Restorer(
                local=self._local,
                consumer=restore_consumer,
                new_admin=lambda: fresh_admin(kafka_config(settings)),
                topic=self._changelog_topic,
                topic_id=self._topic_id(self._changelog_topic),
                budget_s=BROKER_OUTAGE_S_MAX,
            )
            self._ownership = Ownership(
                local=self._local,
                restorer=self._restorer,
                commands_topic=self._commands_topic,
                legs_topic=self._legs_topic,
                new_shard=lambda store, partition: self._decider(store, self._is_local_to(partition)),
                budget_s=BROKER_OUTAGE_S_MAX,
            )
            self._ownership.on_ready = self._assignment_changed
            # Partitions change between transactions: the one committing ends first.
            self._ownership.before_change = lambda: self._settle(in_callback=True)
            self._consumer = self._new_consumer()
            while not stop.is_set():
                self._iteration()
            # A stop checkpoints only if the last transaction committed (its state is applied).
            clean = self._settle(in_callback=True) and not self._reload_owned
        finally:
            self._close(clean=clean)

    def _new_consumer(self) -> Any:
        ownership = self._ownership
        if ownership is None:
            raise RuntimeError("the processor is not running")
        consumer = Consumer({**clients.consumer_config(self.settings), **self.telemetry.consumer_options()})
        consumer.subscribe(
            [self._commands_topic, self._legs_topic],
            on_assign=ownership.on_assign,
            on_revoke=ownership.on_revoke,
            on_lost=ownership.on_lost,
        )
        return consumer

    def _renew_consumer(self, reason: str) -> None:
        """The consumer failed fatally. With static membership that is most often the group
        fencing this very member after its session ran out while a coordinator moved
        (librdkafka #3437), not a second instance: leave every partition (they are assigned
        again, and restored, through the new consumer) and join again. A second instance
        with this worker id would be fenced in turn; neither can commit offsets for a
        generation it is not part of, so nothing is doubled, and the bound in
        streams/renewals.py stops the tug of war (the fences after a lost session, broker
        trouble, do not count)."""
        ownership = self._ownership
        if ownership is None:
            raise RuntimeError("the processor is not running")
        session_lost = ownership.session_lost
        self._renewals.renewing(time.monotonic(), session_lost=session_lost, reason=reason)
        # The transaction committing ends first; if it failed, nothing is sought on the failed
        # consumer: every partition is given up below and taken afresh when assigned again.
        self._settle(in_callback=True)
        self._reload_owned = False
        self._carried = []  # the new consumer starts from the committed positions
        log.error(
            "the consumer failed (%s)%s; leaving its partitions and joining the group again",
            reason,
            " after its own session ran out" if session_lost else " while it held its partitions",
        )
        ownership.drop_all()
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as closing:
            log.warning("closing the failed consumer: %s", closing)
        self._consumer = self._new_consumer()
        log.info("a new consumer joins the group")
        self.metrics.consumers_renewed += 1

    def _topic_id(self, name: str) -> str:
        def describe() -> str:
            admin = fresh_admin(kafka_config(self.settings))  # held until its future is read
            description = admin.describe_topics(TopicCollection([name]), request_timeout=10)
            return str(description[name].result().topic_id)

        return retry_transient(describe, budget_s=BROKER_OUTAGE_S_MAX)

    def _close(self, *, clean: bool) -> None:
        """A clean stop checkpoints what RocksDB holds; a failed one writes nothing (a
        commit it could not confirm may have landed: the next start restores it)."""
        try:
            if clean and self._ownership is not None:
                for owned in self._shards.values():
                    owned.store.discard_staged()
                if self._restorer is not None:
                    self._restorer.checkpoint(list(self._shards))
            if self._consumer is not None:
                if not clean and self._ownership is not None:
                    self._ownership.shards.clear()  # leaving the group must not checkpoint either
                self._consumer.close()  # leaves the group (a static member only on session timeout)
        finally:
            if self._restorer is not None:
                self._restorer.consumer.close()
            if self._producer is not None and clean:
                flush(self._producer, 5)
            self.local.close()

    def _assignment_changed(self) -> None:
        if self._ownership is not None and self._restorer is not None:
            self.metrics.rebalances = self._ownership.rebalances
            self.metrics.last_restore_s = self._ownership.last_restore_s
            self.metrics.restored_records = self._restorer.restored_records
            self.metrics.owned_partitions = sorted(self._ownership.shards)
        self.ready.set()

    # -- one transaction --------------------------------------------------------------------

    def _iteration(self) -> None:
        ownership = self._ownership
        if ownership is None:
            raise RuntimeError("the processor is not running")
        # A batch never waits to fill up: under load batches grow by themselves. Messages the
        # last turn took but left for this one (a batch of bundles) come first, unless the
        # assignment changed since (their partitions are then consumed again from the
        # committed positions, as take_available does with its own). While the last batch's
        # transaction commits, whatever has arrived is taken without waiting for more.
        carried, generation = self._carried, self._carried_generation
        self._carried = []
        fresh = take_available(
            self._consumer,
            max(1, self.settings.max_batch_messages - len(carried)),
            0.0 if carried or self._committing is not None else self.settings.poll_timeout_ms / 1000,
            generation=ownership.current_generation,
        )
        if generation != ownership.current_generation():
            carried = []
        messages = carried + self._usable(fresh)
        if self._reload_owned:
            # The committing transaction failed inside a rebalance callback, where the consumer
            # could not be moved: what is still owned is taken afresh (what was just taken with it).
            self._reload_owned = False
            self._carried = []
            ownership.reload(self._consumer)
            return
        now_s = time.monotonic()
        due_ticks = self._due_ticks(now_s)
        self.metrics.owned_partitions = sorted(self._shards)
        self._results_partition = min(self._shards, default=0)  # the assignment changes only in consume
        if not messages and not due_ticks:
            if self._committing is not None:
                self._settle()
                return
            self._maybe_checkpoint(now_s)
            return
        batch = _Batch(messages, tally=self.telemetry.begin())
        # 1. Decide, while the last batch's transaction (if any) commits on its thread. The
        # batch reads that batch's writes (sealed in the stores) and stages its own on top; its
        # records are held here, since one producer has one transaction open at a time.
        # A bundle counts as its commands: a batch decides at most max_batch_messages
        # inputs, and stops taking more once deciding has used a share of the transaction
        # timeout (a worker starved of CPU would otherwise outlive it and be fenced),
        # always at least one message; the rest is carried.
        deciding_s = time.monotonic()
        deciding_until_s = now_s + self.settings.transaction_timeout_ms / 1000 * TRANSACTION_DECIDING_SHARE_MAX
        for index, message in enumerate(messages):
            if index and (batch.decided >= self.settings.max_batch_messages or time.monotonic() > deciding_until_s):
                batch = self._defer(batch, index)
                break
            batch.decided += self._process(message, batch.counts)
        for owned in due_ticks:
            self._produce(
                self.topology.legs.name,
                self.codec.encode(legs.Tick(worker_id=self.settings.worker_id)),
                key=None,
                partition=owned.partition,
            )
        held, self._held = self._held, []
        decided_s = time.monotonic()
        # 2. The last transaction's end. Only if it committed may this batch, decided on its
        # state, go on; if not, both are consumed again (test_pipelined_loop.py).
        if not self._settle(next_batch=batch):
            return
        settled_s = time.monotonic()
        # 3. This batch's transaction: the consumed offsets join it on a thread (KIP-447: fenced
        # by the group generation), the held records and the changelog's go to librdkafka
        # (they linger until the flush, so they leave in one produce request per partition),
        # and its end is waited for on a thread while the next batch is decided.
        in_flight: OffsetsInFlight | None = None
        # A failure is handled after the `except` block, not in it: the abort and the new
        # producer call librdkafka, and a confluent-kafka call that raises while another
        # exception is being handled (a fenced producer's poll, its abort) leaks a reference
        # to the handled one, and with its traceback the failed producer and the batch: a
        # zombie fenced again and again piled them up (test_worker_faults' fenced worker).
        failure: KafkaError | None = None
        try:
            self._producer.begin_transaction()
            in_flight = self._send_offsets(batch.next)
            for record in held:
                self._send(record)
            changes = self._produce_changes(batch)  # seals each store's staged writes
        except KafkaException as exception:
            failure = exception.args[0]
        if failure is not None:
            self.telemetry.dropped(batch.tally)
            self._abandon(batch, failure, in_flight)
            return
        self.metrics.decide_seconds += (decided_s - deciding_s) + (time.monotonic() - settled_s)
        self._committing = _Committing(
            batch=batch,
            changes=changes,
            started_s=now_s,
            end=Committing(self._transactions_now(), in_flight, self.settings.transaction_timeout_ms / 1000),
        )

    def _settle(self, *, next_batch: _Batch | None = None, in_callback: bool = False) -> bool:
        """Wait for the committing transaction, if one is; True if it committed (its state then
        reaches RocksDB) or none was. If it did not, `next_batch`, decided on its state, is
        dropped with it: both are consumed again (or, inside a rebalance callback, where the
        consumer may not be moved, every partition still owned is taken afresh after it)."""
        committing, self._committing = self._committing, None
        if committing is None:
            return True
        end = committing.end
        if end.wait():
            sending_s, commit_s = end.phases
            self.metrics.send_seconds += sending_s
            self.metrics.commit_seconds += commit_s
            self._apply(committing.changes)
            self._count(committing.batch, committing.started_s)
            self._maybe_checkpoint(time.monotonic())
            return True
        for dropped in (committing.batch, next_batch):
            if dropped is not None:
                self.telemetry.dropped(dropped.tally)
        if end.failure is not None:
            self._abandon(committing.batch, end.failure, end.in_flight, also=next_batch, in_callback=in_callback)
        else:
            self._recover(end.unknown or "the transaction's end is unknown", in_callback=in_callback)
        return False

    def _due_ticks(self, now_s: float) -> list[OwnedShard]:
        """The partitions to write a tick to in this turn: once every tick interval, each
        partition on which something waits for time (a hold's expiry, a batch's deadline, the
        end of the retention window: `Shard.wants_tick`). A partition on which nothing waits
        gets none: such a tick would change nothing but its clock, which the next input moves
        anyway (test_time_and_retention.py::test_a_tick_before_the_due_time_changes_nothing_but_the_clock),
        and it would cost the turn that writes it, and the one that decides it, a partition
        more in their transactions. The clocks compared are the worker's and the broker's
        (the topics' timestamps are LogAppendTime): a worker behind the broker ticks at most
        that much later; one ahead writes a tick that does nothing, and another a tick interval
        later."""
        due = []
        wall_ms = int(time.time() * 1000)
        for owned in self._shards.values():
            if owned.next_tick_s > now_s:
                continue
            owned.next_tick_s = now_s + self.settings.tick_interval_ms / 1000
            if owned.shard.wants_tick(wall_ms):
                due.append(owned)
        return due

    def _send_offsets(self, offsets: dict[tuple[str, int], int]) -> OffsetsInFlight | None:
        """The consumed offsets into the open transaction (KIP-447: fenced by the group
        generation), started on a thread with a deadline: librdkafka may never return from
        this call (streams/transactions.py)."""
        if not offsets:
            return None  # ticks alone consume nothing
        return self._transactions_now().send_offsets(
            [KafkaPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()],
            self._consumer.consumer_group_metadata(),
            send_offsets_timeout_s(self.settings),
        )

    def _usable(self, messages: list[Message]) -> list[Message]:
        """The messages to decide: consumer errors are reported (a fatal one stops the
        worker; a broker away is retried by librdkafka and only logged)."""
        if all(message.error() is None for message in messages):
            return messages
        usable = []
        for message in messages:
            error = message.error()
            if error is None:
                usable.append(message)
            elif error.fatal() or error.code() == KafkaError._FATAL or is_fenced(error):
                # librdkafka reports a fatal consumer error as an event whose code is _FATAL.
                self._renew_consumer(str(error))
                return []
            elif error.code() == KafkaError._AUTO_OFFSET_RESET:
                raise InvariantViolation(
                    f"{message.topic()}[{message.partition()}]: the position the state records is no longer in the "
                    f"topic ({error}): commands were deleted before this partition consumed them"
                )
            elif error.code() != KafkaError._PARTITION_EOF:
                self._log_consumer_error(error)
        return usable

    def _defer(self, batch: _Batch, kept: int) -> _Batch:
        """The batch cut to its first `kept` messages; the others are carried to the next
        turn (not sought again: the consumer would fetch them, bundles and all, once more)."""
        ownership = self._ownership
        if ownership is None:
            raise RuntimeError("the processor is not running")
        self._carried = batch.messages[kept:]
        self._carried_generation = ownership.current_generation()
        cut = _Batch(batch.messages[:kept], tally=batch.tally, counts=batch.counts, decided=batch.decided)
        # A partition whose messages are all carried stays where it was: its offset is sent, and
        # its changelog positions written, at its first offset (never past the carried messages:
        # a restart refuses a group offset the state does not hold, streams/assignment.py; and a
        # partition never consumed from has no position yet).
        # test_a_worker_dead_right_after_a_turn_that_carried_a_whole_partition_starts_again
        for slot, first in batch.first.items():
            cut.next.setdefault(slot, first)
        return cut

    _last_consumer_error_s = 0.0

    def _log_consumer_error(self, error: KafkaError) -> None:
        now_s = time.monotonic()
        if now_s - self._last_consumer_error_s >= CONSUMER_ERROR_LOG_INTERVAL_S:
            self._last_consumer_error_s = now_s
            log.warning("consumer: %s (librdkafka retries)", error)

    def _produce_changes(self, batch: _Batch) -> dict[int, _Changes]:
        """Each partition's staged state changes, then its input positions, as changelog
        records. Returns them per partition, for RocksDB once the transaction commits."""
        consumed: dict[int, dict[str, int]] = {}
        for (topic, partition), offset in batch.next.items():
            consumed.setdefault(partition, {})["commands" if topic == self._commands_topic else "legs"] = offset
        changes: dict[int, _Changes] = {}
        for partition, owned in self._shards.items():
            records = owned.store.staged_changes()
            offsets = consumed.get(partition)
            if offsets is None:
                if records:
                    # Changelog records without consumed offsets would commit without the group
                    # generation's fence: a zombie could write them after a new owner restored.
                    raise InvariantViolation(f"partition {partition} changed state without consuming input")
                continue
            positions = owned.positions.advanced(commands=offsets.get("commands"), legs=offsets.get("legs"))
            records.append((POSITIONS_KEY, positions.encode()))
            topic = self._changelog_topic
            for key, value in records[:-1]:
                self._send((topic, value, key, partition, 0, None))
            self._send((topic, records[-1][1], records[-1][0], partition, 0, None), self._on_changelog_delivery)
            changes[partition] = _Changes(records=records, positions=positions)
        return changes

    def _on_changelog_delivery(self, error: KafkaError | None, message: Message) -> None:
        partition, offset = message.partition(), message.offset()
        if error is None and partition is not None and offset is not None:
            self._delivered[partition] = offset

    def _apply(self, changes: dict[int, _Changes]) -> None:
        """The transaction committed: RocksDB gets its state, and the restore bookkeeping how
        far RocksDB now holds each changelog partition (the broker's offset of our last
        record there; the commit served its delivery report)."""
        restorer = self._restorer
        if restorer is None:
            raise RuntimeError("the processor is not running")
        for partition, change in changes.items():
            owned = self._shards[partition]
            owned.store.apply_committed(change.records)
            owned.positions = change.positions
            delivered = self._delivered.pop(partition, None)
            if delivered is not None:
                restorer.committed(partition, delivered + 1)
        self._delivered.clear()

    def _abandon(
        self,
        batch: _Batch,
        error: KafkaError,
        in_flight: OffsetsInFlight | None,
        *,
        also: _Batch | None = None,
        in_callback: bool = False,
    ) -> None:
        """The transaction cannot commit: abort it, forget what it staged (and what `also`, the
        batch decided on it, staged) and consume both again — or, if the producer itself
        failed, recover with a new one."""
        transactions = self._transactions_now()
        if in_flight is not None:
            # The abort may only follow the offsets' call; what that call says no longer matters,
            # unless it never returns (the producer is then replaced, which fences it). The new
            # producer is made outside the `except` block (see `_iteration`).
            stuck: str | None = None
            try:
                in_flight.wait()
            except KafkaException:
                pass
            except ProducerStuck as never_returned:
                stuck = str(never_returned)
            if stuck is not None:
                self._recover(stuck, in_callback=in_callback)
                return
        if is_abortable(error):
            log.warning("transaction aborted (%s); the batch will be consumed again", error)
            try:
                transactions.abort(self.settings.transaction_timeout_ms / 1000)
            except KafkaException as abort_failure:
                error = abort_failure.args[0]
            else:
                self.metrics.aborts += 1
                self.telemetry.aborted(error)
                self._forget_staged()
                if in_callback:
                    self._carried = []
                    self._reload_owned = True
                else:
                    self._rewind(batch, also)
                return
        self._recover(str(error), in_callback=in_callback)

    def _recover(self, reason: str, *, in_callback: bool = False) -> None:
        """The producer is unusable and the last transaction's fate may be unknown: a new
        producer (its init_transactions completes or aborts what the old one left), then
        every owned partition reloaded from the changelog (streams/assignment.py `reload`;
        after the poll, if this is inside a rebalance callback)."""
        transactions = self._transactions_now()
        ownership = self._ownership
        if ownership is None:
            raise RuntimeError("the processor is not running")
        transactions.replace(reason)
        self._producer = transactions.producer
        # After the replacement, which serves the failed instance's queued delivery reports:
        # none of them may count as a committed changelog write.
        self._forget_staged()
        self._carried = []  # the reload consumes every owned partition again from its state
        self.metrics.producers_replaced = transactions.replaced
        if in_callback:
            self._reload_owned = True
        else:
            ownership.reload(self._consumer)

    def _transactions_now(self) -> TransactionalProducer:
        transactions = self._transactions
        if transactions is None:
            raise RuntimeError("the processor is not running")
        transactions.producer = self._producer  # tests may have wrapped it
        return transactions

    def _forget_staged(self) -> None:
        self._delivered.clear()
        for owned in self._shards.values():
            owned.store.discard_staged()

    def _rewind(self, batch: _Batch, also: _Batch | None = None) -> None:
        """Every partition the batch, the one decided on it (`also`) or the messages carried
        past them took from, back to its first offset among them (or drops a partition the
        consumer no longer holds)."""
        ownership = self._ownership
        if ownership is None:
            raise RuntimeError("the processor is not running")
        first = dict(batch.first)
        for slot, offset in ({} if also is None else also.first).items():
            first.setdefault(slot, offset)
        for message in self._carried:
            topic, partition, offset = coordinates(message)
            first.setdefault((topic, partition), offset)
        self._carried = []
        for (topic, partition), offset in first.items():
            ownership.seek(self._consumer, KafkaPartition(topic, partition, offset))  # owned ones only

    def _count(self, batch: _Batch, started_s: float) -> None:
        """Metrics count what committed, never what an aborted transaction tried."""
        counts, metrics = batch.counts, self.metrics
        metrics.transactions += 1
        metrics.messages += len(batch.messages)
        metrics.events += counts.events
        metrics.results += counts.results
        metrics.legs += counts.legs
        metrics.dead_letters += counts.dead_letters
        metrics.transaction_seconds += time.monotonic() - started_s
        metrics.batch_messages_max = max(metrics.batch_messages_max, len(batch.messages))
        self.telemetry.committed(metrics, batch.tally)

    def _process(self, message: Message, counts: ProcessorMetrics) -> int:
        """Decide one message; how many inputs it carried (a bundle: its commands)."""
        topic, partition, _ = coordinates(message)
        owned = self._shards.get(partition)
        if owned is None:
            raise InvariantViolation(f"message for partition {partition}, which this worker does not own")
        value = message.value()
        is_command = topic == self._commands_topic
        undecodable: DecodeError | None = None
        try:
            if value is None:
                raise DecodeError(DecodeErrorCode.UNDECODABLE, "the message has no value")
            if len(value) > self.settings.message_bytes_max:
                raise DecodeError(
                    DecodeErrorCode.TOO_LARGE, f"{len(value)} bytes; at most {self.settings.message_bytes_max} accepted"
                )
            decoded = self.codec.decode(value, expected=COMMAND_INPUT_TYPES if is_command else legs.LEG_TYPES)
        except DecodeError as error:
            undecodable = error
        if undecodable is not None:
            # Dead-lettered after the `except` block, not in it: its produce() raises when the
            # producer is fenced, and would leak the handled error (see `_iteration`).
            self._dead_letter(message, undecodable)
            counts.dead_letters += 1
            return 1
        if type(decoded) is CommandBundle:
            return self._process_bundle(message, decoded, owned, counts)
        self._decide(message, decoded, owned, counts)
        return 1

    def _process_bundle(
        self, message: Message, bundle: CommandBundle, owned: OwnedShard, counts: ProcessorMetrics
    ) -> int:
        """Every command of a bundle, one at a time, in this transaction; or none of them
        and the bundle dead-lettered, if one of them cannot be decided here."""
        unpacked = unbundle(self.codec, bundle, is_local=self._is_local_to(owned.partition))
        if isinstance(unpacked, BundleRefusal):
            self._dead_letter(message, unpacked)
            counts.dead_letters += 1
            return 1
        for command in unpacked:
            self._decide(message, command, owned, counts)
        return len(unpacked)

    def _decide(self, message: Message, decoded: Any, owned: OwnedShard, counts: ProcessorMetrics) -> None:
        """One command or leg to its shard, and what the shard decided to Kafka."""
        partition = owned.partition
        outcome = owned.shard.handle(decoded, timestamp_ms=message.timestamp()[1])
        if outcome.refused is not None:  # a leg that does not fit the shard's state: it changed nothing
            self._dead_letter(message, outcome.refused)
            counts.dead_letters += 1
        headers = self.telemetry.decided(message, decoded, outcome)
        encode = self.codec.encode
        events_topic, results_topic, legs_topic = self._events_topic, self._results_topic, self._legs_topic
        for event in outcome.events:
            self._produce(
                events_topic,
                encode(event),
                key=event.account_id.encode(),
                partition=partition,
                timestamp=event.occurred_at_ms,
                headers=headers,
            )
        for result in outcome.results:
            # Every result of this worker on one partition, its lowest owned one, not the key's
            # nor the deciding shard's: librdkafka sends one produce request per partition, and
            # the broker verifies each of a transaction's (KIP-890), so a transaction that
            # touches fewer partitions costs the broker less and commits sooner. Clients read
            # every partition of the results topic and match results by command id.
            self._produce(
                results_topic,
                encode(result),
                key=result.command_id.encode(),
                partition=self._results_partition,
                headers=headers,
            )
        for leg in outcome.legs:
            self._produce(legs_topic, encode(leg), key=leg.routing_key.encode(), headers=headers)
        for audited in outcome.audit:  # on the deciding shard's partition (rare: privileged commands and denials)
            self._produce(
                self._audit_topic,
                encode(audited),
                key=audited.account_id.encode(),
                partition=partition,
                timestamp=audited.occurred_at_ms,
                headers=headers,
            )
        counts.events += len(outcome.events)
        counts.results += len(outcome.results)
        counts.legs += len(outcome.legs)

    def transactions_replaced(self) -> int:
        """How many times this worker replaced its transactional producer (0 before run())."""
        return 0 if self._transactions is None else self._transactions.replaced

    def _dead_letter(self, message: Message, error: DecodeError | InputRefusal | BundleRefusal) -> None:
        topic, partition, offset = coordinates(message)
        value, original_key = message.value(), message.key()
        # Both cut to a bound: the letter (body + key, the key twice) must fit the topic's
        # max.message.bytes, or the transaction fails on it and the worker stops on every retry.
        key = None if original_key is None else original_key[:DEAD_LETTER_KEY_BYTES_MAX]
        letter = DeadLetter(
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            key=key,
            value=None if value is None else value[:DEAD_LETTER_VALUE_BYTES_MAX],
            reason_code=error.code.value,
            reason=error.reason,
            worker_id=self.settings.worker_id,
            failed_at_ms=int(time.time() * 1000),
        )
        # The reason as text: a log record keeps its arguments, and a handler that keeps records
        # (pytest's capture, a buffer) would keep the error's traceback and every frame in it.
        log.warning("dead letter from %s/%d@%d: %s", topic, partition, offset, str(error))
        self.telemetry.dead_lettered(error.code.value)
        self._produce(self.topology.deadletter.name, self.codec.encode(letter), key=key)

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        partition: int = -1,
        timestamp: int = 0,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """An output of the batch being decided, held back until its transaction begins (see
        `_iteration`)."""
        self._held.append((topic, value, key, partition, timestamp, headers))

    def _send(self, record: _Held, on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> None:
        """A record into the open transaction."""
        topic, value, key, partition, timestamp, headers = record
        while True:
            try:
                if on_delivery is None:
                    self._producer.produce(topic, value, key, partition=partition, timestamp=timestamp, headers=headers)
                else:
                    self._producer.produce(
                        topic, value, key, partition=partition, timestamp=timestamp, on_delivery=on_delivery
                    )
                return
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: let librdkafka send some

    # -- checkpoints ------------------------------------------------------------------------------

    def _maybe_checkpoint(self, now_s: float) -> None:
        if now_s >= self._next_checkpoint_s and self._restorer is not None:
            self._next_checkpoint_s = now_s + CHECKPOINT_INTERVAL_S
            self._restorer.checkpoint(list(self._shards))

    # -- the shards -------------------------------------------------------------------------------

    def _ledger_shard(self, store: PartitionStore, is_local: Callable[[str], bool]) -> Decider:
        return Shard(store=store, config=self.shard_config, is_local=is_local)

    def _is_local_to(self, partition: int) -> Callable[[str], bool]:
        """Whether a routing key is on `partition`; asked for every command (twice for one
        in a bundle) of keys that repeat, so the answers of the last ones are kept."""
        known = self._locality.get(partition)
        if known is not None:
            return known
        partitions = self.settings.partitions

        @functools.lru_cache(maxsize=ROUTING_KEYS_CACHED_MAX)
        def is_local(key: str) -> bool:
            return partition_for(key, partitions) == partition

        self._locality[partition] = is_local
        return is_local

    def owns(self, partition: int) -> bool:
        """Safe from other threads (a dict lookup)."""
        return partition in self._shards


def send_offsets_timeout_s(settings: Settings) -> float:
    """How long send_offsets_to_transaction may wait before the batch is given up (aborted
    and decided again; replaced, if the call does not return at all). Waiting longer than
    the transaction timeout gains nothing: the coordinator aborts a transaction open that
    long and bumps the producer's epoch, so its commit could not land anyway."""
    return settings.transaction_timeout_ms / 1000
