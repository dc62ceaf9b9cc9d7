"""Bring a worker's RocksDB up to the end of changelog partitions, and remember how far
it holds them.

`applied` is the heart of it: for each partition, an offset below which RocksDB holds
every committed changelog record. It is only ever set from what this worker itself
observed — the end of its own restore, or the offsets the broker gave its own records
once their transaction committed and RocksDB received them — and a checkpoint writes
exactly that, never the changelog's end. The end may include records another owner
wrote while this worker thought it still owned the partition (a paused process whose
session ran out): a checkpoint there would make the next restore skip them, and the
shard would decide on stale balances, reissue sequence numbers and forget dedup entries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaPartition

from foundation.offsets import high_watermarks, last_stable_offsets, refresh_leaders
from ledger.errors import InvariantViolation
from streams.store import LocalState
from topologies.topics import CHANGELOG_TOMBSTONE_RETENTION_MS

log = logging.getLogger(__name__)

RESTORE_BATCH_MESSAGES = 10_000
RESTORE_POLL_S = 0.1
STABLE_WAIT_POLL_S = 0.05
STABLE_WAIT_REPORT_S = 10.0  # a wait this long is worth a line in the log
# A checkpoint older than this may predate tombstones that compaction has since removed:
# such a partition is restored from scratch. The changelog's delete.retention.ms is pinned
# at twice this (topologies/topics.py), and a worker refuses a changelog that differs.
CHECKPOINT_AGE_MAX_MS = CHANGELOG_TOMBSTONE_RETENTION_MS // 2


class Restorer:
    def __init__(
        self,
        *,
        local: LocalState,
        consumer: Any,
        new_admin: Callable[[], Any],
        topic: str,
        topic_id: str,
        budget_s: float,
    ) -> None:
        self.local = local
        self.consumer = consumer
        # The end offsets are asked with a client made when first needed and replaced after a
        # failed ask, never one made while the broker did not answer and kept: such a client can
        # stay deaf after the broker is back (topologies.admin.fresh_admin), and every restore
        # would then fail. test_a_worker_started_while_the_broker_does_not_answer_waits_for_it
        self._new_admin = new_admin
        self._admin: Any = None
        self.topic = topic
        self.topic_id = topic_id
        self.budget_s = budget_s  # how long a broker may be unreachable before restore gives up
        self.applied: dict[int, int] = {}  # partition -> every committed record below it is in RocksDB
        self.restored_records = 0

    def restore(self, partitions: list[int]) -> None:
        """RocksDB equal to the changelog partitions up to their stable end, all at once.

        The end is the high watermark with no transaction open on the partition: a previous
        owner killed mid-transaction keeps one open until the broker aborts it
        (transaction.timeout.ms), and its fate must be known before this shard decides
        anything, or a commit that lands after the restore would be missed."""
        if not partitions:
            return
        ends = self.stable_ends(partitions)
        positions: dict[int, int] = {}
        for partition in partitions:
            positions[partition] = self._start(partition)
            if positions[partition] > ends[partition]:
                ends[partition] = self._end_at_least(partition, positions[partition])
        behind = {partition for partition in partitions if positions[partition] < ends[partition]}
        self.consumer.assign([KafkaPartition(self.topic, partition, positions[partition]) for partition in behind])
        try:
            while behind:
                self._apply_next(positions)
                reached = [partition for partition in behind if positions[partition] >= ends[partition]]
                if reached:
                    ends.update(self.stable_ends(reached))  # a previous owner may have committed meanwhile
                    behind -= {partition for partition in reached if positions[partition] >= ends[partition]}
        finally:
            self.consumer.unassign()
        for partition in partitions:
            self.applied[partition] = positions[partition]
            self.local.write_checkpoint(partition, positions[partition], self.topic_id)

    def _start(self, partition: int) -> int:
        checkpoint = self.local.checkpoint(partition)
        if (
            checkpoint is None
            or checkpoint.topic_id != self.topic_id
            or time.time() * 1000 - checkpoint.written_ms > CHECKPOINT_AGE_MAX_MS
        ):
            # No usable checkpoint (new here, another cluster or topic, or too old to trust
            # that no tombstone was compacted away since): start from nothing.
            self.local.wipe(partition)
            return 0
        return checkpoint.offset

    def _end_at_least(self, partition: int, checkpoint: int) -> int:
        """The changelog seems to end below what this worker applied from it. Right after a
        leader change a broker may answer with an end it has not caught up to yet: ask again.
        If it stays below, committed records were lost (an unclean leader election, a topic
        restored from a backup): deciding on, or wiping, state the log no longer has would
        be wrong either way, so the worker stops and says so."""
        deadline = time.monotonic() + self.budget_s
        while True:
            end = self.stable_ends([partition])[partition]
            if end >= checkpoint:
                return end
            if time.monotonic() > deadline:
                raise InvariantViolation(
                    f"{self.topic}[{partition}] ends at offset {end}, but this worker's RocksDB already holds its "
                    f"records up to {checkpoint}: the changelog lost committed records"
                )
            log.warning(
                "%s[%d] ends at %d, below the checkpoint %d: asking again", self.topic, partition, end, checkpoint
            )
            time.sleep(STABLE_WAIT_POLL_S * 10)

    def _apply_next(self, positions: dict[int, int]) -> None:
        batches: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for message in self.consumer.consume(RESTORE_BATCH_MESSAGES, timeout=RESTORE_POLL_S):
            partition, error = message.partition(), message.error()
            if error is None:
                batches.setdefault(partition, []).append((message.key() or b"", message.value()))
                positions[partition] = message.offset() + 1
            elif error.code() == KafkaError._PARTITION_EOF:
                # The position moves past trailing transaction markers only here.
                position = self.consumer.position([KafkaPartition(self.topic, partition)])
                positions[partition] = max(positions[partition], position[0].offset)
            elif error.fatal():
                raise KafkaException(error)
            else:
                log.warning("restore of %s: %s (retrying)", self.topic, error)  # a broker away: librdkafka retries
        for partition, batch in batches.items():
            self.local.apply_changelog(partition, batch)
            self.restored_records += len(batch)

    def _client(self) -> Any:
        return self._renew() if self._admin is None else self._admin

    def _renew(self) -> Any:
        self._admin = self._new_admin()
        return self._admin

    def stable_ends(self, partitions: list[int]) -> dict[int, int]:
        """Each partition's high watermark, once no transaction is open on it."""
        ends: dict[int, int] = {}
        waiting = list(partitions)
        # A restore follows a rebalance or a fault: the leaders the client cached may be gone.
        refresh_leaders(self._client(), self.topic)
        next_report_s = time.monotonic() + STABLE_WAIT_REPORT_S
        while waiting:
            high = high_watermarks(self._client(), self.topic, waiting, budget_s=self.budget_s, renew=self._renew)
            stable = last_stable_offsets(self._client(), self.topic, waiting, budget_s=self.budget_s, renew=self._renew)
            for partition in list(waiting):
                if stable[partition] >= high[partition]:
                    ends[partition] = high[partition]
                    waiting.remove(partition)
            if waiting:
                if time.monotonic() >= next_report_s:
                    next_report_s = time.monotonic() + STABLE_WAIT_REPORT_S
                    log.warning(
                        "%s %s: a transaction is still open (stable %s < end %s); waiting for it to be decided",
                        self.topic,
                        waiting,
                        [stable[partition] for partition in waiting],
                        [high[partition] for partition in waiting],
                    )
                time.sleep(STABLE_WAIT_POLL_S)
        return ends

    def committed(self, partition: int, end_offset: int) -> None:
        """This worker's own transaction committed records up to `end_offset` (exclusive)
        on the partition, and RocksDB has them."""
        self.applied[partition] = max(self.applied.get(partition, 0), end_offset)

    def checkpoint(self, partitions: list[int]) -> None:
        """Record how far RocksDB holds the changelog: only what this worker applied."""
        for partition in partitions:
            offset = self.applied.get(partition)
            if offset is not None:
                self.local.write_checkpoint(partition, offset, self.topic_id)

    def forget(self, partitions: list[int]) -> None:
        for partition in partitions:
            self.applied.pop(partition, None)
