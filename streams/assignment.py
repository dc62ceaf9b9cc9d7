"""Partitions come and go: what a worker does when the group gives it partitions, takes
them back, or tells it they were lost.

On assignment, in this order (Kafka Streams' order, for the same reason):

1. **Wait for the previous owner's offsets to be decided.** `committed()` on a
   read_committed consumer asks for stable offsets (KIP-447): while the previous owner
   has a transactional offset commit pending, the broker answers "unstable" and the
   call waits. A paused previous owner (a zombie) whose offset commit the group accepted
   may still commit its transaction: had we restored first, its changelog records —
   perhaps still in flight to the broker — could land after our restore while we start
   after its batch. Once its offsets are stable, its transaction is decided, and no
   later transaction of it can commit offsets (the group generation fences it).
2. **Restore** RocksDB to the changelog's stable end (streams/restore.py).
3. **Start where the state is.** The restored changelog records where the shard is in
   its input (streams/positions.py), written in the same transactions as the group's
   offsets; the consumer is assigned at exactly those positions. If the group's offsets
   are ahead, the state misses a committed batch: the worker stops rather than decide on
   it. If they are missing (expired, deleted), the changelog's positions are used; a
   partition with neither starts at the beginning of its topics.

Revoked or lost partitions are dropped between transactions (callbacks are served only
inside the consumer's poll), with a checkpoint of what this worker's RocksDB really holds
(streams/restore.py), which stays right even when the partition was lost without notice.
Every change bumps `generation`, so the loop never keeps messages fetched for an
assignment that a rebalance replaced (foundation/consuming.py `take_available`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaPartition

from foundation.consuming import is_transient
from ledger.errors import InvariantViolation
from streams.positions import NONE, POSITIONS_KEY, InputPositions
from streams.restore import Restorer
from streams.store import LocalState, PartitionStore, partition_prefix

log = logging.getLogger(__name__)

COMMITTED_TIMEOUT_S = 10.0


@dataclasses.dataclass(slots=True)
class OwnedShard:
    partition: int
    store: PartitionStore
    shard: Any  # the Decider
    positions: InputPositions
    next_tick_s: float = 0.0


class Ownership:
    """The partitions this worker owns now, kept by the consumer's rebalance callbacks."""

    def __init__(
        self,
        *,
        local: LocalState,
        restorer: Restorer,
        commands_topic: str,
        legs_topic: str,
        new_shard: Callable[[PartitionStore, int], Any],
        budget_s: float,
    ) -> None:
        self.local = local
        self.restorer = restorer
        self.commands_topic = commands_topic
        self.legs_topic = legs_topic
        self.new_shard = new_shard
        self.budget_s = budget_s
        self.shards: dict[int, OwnedShard] = {}
        self.generation = 0  # bumped on every change of the assignment
        self.rebalances = 0
        self.last_restore_s = 0.0
        self.last_phases = ""
        self.on_ready: Callable[[], None] = lambda: None
        # Called first in every callback: the loop's transaction still committing ends before
        # what it changed is dropped or taken again (streams/processor.py `_settle`).
        self.before_change: Callable[[], object] = lambda: None
        # The consumer's session ran out since its last assignment (on_lost): a fence now is
        # broker trouble, not another instance (streams/renewals.py).
        self.session_lost = False

    def current_generation(self) -> int:
        return self.generation

    # -- the consumer's callbacks (served inside poll/consume, between transactions) ---------

    def on_assign(self, consumer: Any, assigned: list[KafkaPartition]) -> None:
        self.before_change()
        started = time.monotonic()
        self.generation += 1
        numbers = sorted({tp.partition for tp in assigned if tp.topic == self.commands_topic})
        legs_numbers = sorted({tp.partition for tp in assigned if tp.topic == self.legs_topic})
        if numbers != legs_numbers:
            raise InvariantViolation(
                f"commands partitions {numbers} and legs partitions {legs_numbers} are not co-partitioned; "
                "the range assignor and equal partition counts guarantee it"
            )
        consumer.assign(self._take(consumer, numbers))
        self.session_lost = False
        self.rebalances += 1
        self.last_restore_s = time.monotonic() - started
        log.info("assigned partitions %s (restored in %.2fs: %s)", numbers, self.last_restore_s, self.last_phases)
        self.on_ready()

    def reload(self, consumer: Any) -> None:
        """Take every owned partition afresh, as if just assigned: after the producer was
        replaced, the last transaction may or may not have committed, so the state is read
        again from the changelog (RocksDB keeps what it holds; restore adds what landed) and
        the consumer is moved to where that state says it is."""
        self.generation += 1
        numbers = sorted(self.shards)
        self.shards.clear()
        for start in self._take(consumer, numbers):
            self.seek(consumer, start)
        log.info("partitions %s reloaded from the changelog (%s)", numbers, self.last_phases)

    def seek(self, consumer: Any, start: KafkaPartition) -> None:
        """Move the consumer to `start` on an owned partition, or drop the partition if the
        consumer no longer holds it: a fence or a lost session took the assignment and the
        next poll serves the callback, and librdkafka refuses the seek with _STATE. Defect: a
        worker whose producer its twin fenced reloaded its partitions after its consumer had
        been fenced too, and the refused seek stopped it (test_worker_faults.py, two workers
        with one worker id). Dropped, the partition is consumed by no one here until the
        group assigns it again, and then taken afresh from the changelog. A partition not
        owned (or dropped by an earlier refused seek: its other topic) is not sought."""
        if start.partition not in self.shards:
            return
        try:
            consumer.seek(start)
        except KafkaException as exception:
            error: KafkaError = exception.args[0]
            if error.code() not in (KafkaError._STATE, KafkaError._UNKNOWN_PARTITION):
                raise
            log.warning("%s[%d]: the consumer no longer holds it (%s); dropped", start.topic, start.partition, error)
            self._drop([start], lost=True)

    def _take(self, consumer: Any, numbers: list[int]) -> list[KafkaPartition]:
        """The three steps of taking partitions (see the module's note); returns where the
        consumer must start on each."""
        assigned = [KafkaPartition(topic, n) for n in numbers for topic in (self.commands_topic, self.legs_topic)]
        started = time.monotonic()
        committed = self._stable_committed(consumer, assigned)  # 1. the barrier
        barrier_done = time.monotonic()
        self.restorer.restore(numbers)  # 2. restore
        # Where a slow take-over spends its time, for the log line that reports it.
        self.last_phases = (
            f"offsets stable after {barrier_done - started:.2f}s, restore {time.monotonic() - barrier_done:.2f}s"
        )
        starts: list[KafkaPartition] = []
        for partition in numbers:  # 3. start where the state is
            positions = self._positions(partition, committed)
            log.info(
                "partition %d: state restored to changelog offset %s, input at commands %d, legs %d",
                partition,
                self.restorer.applied.get(partition),
                positions.commands,
                positions.legs,
            )
            store = PartitionStore(self.local, partition)
            self.shards[partition] = OwnedShard(
                partition=partition, store=store, shard=self.new_shard(store, partition), positions=positions
            )
            starts.append(KafkaPartition(self.commands_topic, partition, _start(positions.commands)))
            starts.append(KafkaPartition(self.legs_topic, partition, _start(positions.legs)))
        return starts

    def on_revoke(self, consumer: Any, revoked: list[KafkaPartition]) -> None:
        self.before_change()
        self._drop(revoked, lost=False)

    def on_lost(self, consumer: Any, lost: list[KafkaPartition]) -> None:
        self.before_change()
        self.session_lost = True
        self._drop(lost, lost=True)

    def drop_all(self) -> None:
        """Give up every partition (the consumer is being replaced; the group will assign
        them again, to this worker or another). The new member has lost nothing of its own."""
        self._drop([KafkaPartition(self.commands_topic, partition) for partition in self.shards], lost=True)
        self.session_lost = False

    def _drop(self, partitions: list[KafkaPartition], *, lost: bool) -> None:
        self.generation += 1
        numbers = sorted({tp.partition for tp in partitions} & set(self.shards))
        staged = [partition for partition in numbers if self.shards[partition].store.has_staged()]
        if staged:
            raise InvariantViolation(
                f"partitions {staged} dropped while their transaction is open; callbacks run between transactions"
            )
        # What this worker applied, never the changelog's end: right even if another owner
        # has been writing these partitions since (lost: our session ran out unnoticed).
        self.restorer.checkpoint(numbers)
        self.restorer.forget(numbers)
        for partition in numbers:
            del self.shards[partition]
        if not numbers:
            return
        if lost:
            log.warning("lost partitions %s (the session ran out: another worker owns them now)", numbers)
        else:
            log.info("revoked partitions %s", numbers)

    # -- steps of an assignment ---------------------------------------------------------------

    def _stable_committed(self, consumer: Any, assigned: list[KafkaPartition]) -> dict[tuple[str, int], int]:
        """The group's committed offsets once no transactional offset commit is pending on
        them (read_committed consumers ask with RequireStable)."""
        deadline = time.monotonic() + self.budget_s
        while True:
            try:
                answer = consumer.committed(
                    [KafkaPartition(tp.topic, tp.partition) for tp in assigned], timeout=COMMITTED_TIMEOUT_S
                )
                break
            except KafkaException as exception:
                if not is_transient(exception.args[0]) or time.monotonic() > deadline:
                    raise
                log.warning("committed offsets not available yet (%s); retrying", exception.args[0])
        for tp in answer:
            if tp.error is not None:
                raise KafkaException(tp.error)
        return {(tp.topic, tp.partition): tp.offset for tp in answer}

    def _positions(self, partition: int, committed: dict[tuple[str, int], int]) -> InputPositions:
        raw = self.local.db.get(partition_prefix(partition) + POSITIONS_KEY)
        recorded = InputPositions() if raw is None else InputPositions.decode(raw)
        chosen = {}
        for topic, name in ((self.commands_topic, "commands"), (self.legs_topic, "legs")):
            in_state = getattr(recorded, name)
            in_group = committed.get((topic, partition), OFFSET_INVALID)
            in_group = NONE if in_group < 0 else in_group
            if in_group > in_state and in_state != NONE:
                raise InvariantViolation(
                    f"{topic}[{partition}]: the group committed offset {in_group} but the restored state includes "
                    f"input only up to {in_state} (changelog restored to {self.restorer.applied.get(partition)}); "
                    "a committed batch's state change is missing from the changelog"
                )
            if in_state == NONE and in_group != NONE:
                if not self.local.has_state(partition):
                    raise InvariantViolation(
                        f"{topic}[{partition}]: the group committed offset {in_group} but the changelog (restored to "
                        f"{self.restorer.applied.get(partition)}) holds no state for the partition (deleted or "
                        "recreated?); deciding from nothing would apply "
                        "commands to missing accounts. Use a new topic prefix, or reset the group's offsets."
                    )
                in_state = in_group  # state written before positions were recorded (an older version)
            elif in_group != in_state:
                log.warning(
                    "%s[%d]: the group's committed offset is %s, the state's is %d; resuming where the state is",
                    topic,
                    partition,
                    "missing" if in_group == NONE else in_group,
                    in_state,
                )
            chosen[name] = in_state
        return InputPositions(commands=chosen["commands"], legs=chosen["legs"])


def _start(position: int) -> int:
    return OFFSET_BEGINNING if position == NONE else position
