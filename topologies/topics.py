"""Topic specifications.

    commands   client commands, key = routing key (account id, or batch id for batches)
    legs       shard-to-shard messages (credits, refunds, 2PC, ticks), key = routing key
    events     AccountEvent, key = account id; the audit trail, kept forever
    results    CommandResult, key = command id, on the deciding worker's lowest owned partition
    changelog  the shards' state, compacted; partition p holds partition p's shard
    deadletter messages that could not be decoded or accepted, with the reason
    audit      AuditEvent: who tried what and whether they were let (privileged commands,
               denials), key = account id; written by the workers (on the deciding shard's
               partition, in the decision's transaction) and the gateway; kept forever
    deadletter.redriven  the dead letters `streamwallet deadletter redrive` has re-driven,
               key = the original's "<topic>/<partition>@<offset>", written in the same
               transaction as the re-driven message (streamwallet/redrive.py)

commands, legs, events and changelog are co-partitioned: the same partition count,
and partition p of each belongs to the shard that owns partition p of commands.
Topics that carry time for the state machine use broker timestamps (LogAppendTime),
so a client's clock cannot move a partition's clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

DAY_MS = 24 * 3600 * 1000
CHANGELOG_TOMBSTONE_RETENTION_MS = DAY_MS


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str]
    key: str  # what the message key is
    values: tuple[str, ...]  # Avro record types it carries
    copartitioned: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    prefix: str = "streamwallet"
    partitions: int = 8
    replication_factor: int = 1
    min_insync_replicas: int = 1

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"a topology needs at least one partition, not {self.partitions}")
        if not 1 <= self.min_insync_replicas <= self.replication_factor:
            raise ValueError(
                f"min.insync.replicas {self.min_insync_replicas} must be between 1 and the replication factor "
                f"{self.replication_factor}"
            )

    @property
    def commands(self) -> TopicSpec:
        return self._spec(
            "commands",
            key="routing key: account_id, from_account_id for transfers, batch_id for batches",
            values=("streamwallet.command.*",),
            retention_ms=7 * DAY_MS,
            log_append_time=True,
        )

    @property
    def legs(self) -> TopicSpec:
        return self._spec(
            "legs",
            key="routing key of the receiving shard (account id or batch id); none for ticks",
            values=("streamwallet.internal.*",),
            retention_ms=7 * DAY_MS,
            log_append_time=True,
        )

    @property
    def events(self) -> TopicSpec:
        return self._spec("events", key="account_id", values=("streamwallet.event.AccountEvent",), retention_ms=-1)

    @property
    def results(self) -> TopicSpec:
        return self._spec(
            "results",
            key="command_id (on the deciding worker's lowest owned partition, not the key's hash)",
            values=("streamwallet.result.CommandResult",),
            retention_ms=7 * DAY_MS,
        )

    @property
    def changelog(self) -> TopicSpec:
        return self._spec(
            "changelog",
            key="one letter for the table, then the record's key",
            values=("streamwallet.state.*",),
            compacted=True,
        )

    @property
    def deadletter(self) -> TopicSpec:
        return self._spec(
            "deadletter",
            key="the rejected message's key",
            values=("streamwallet.deadletter.DeadLetter",),
            retention_ms=30 * DAY_MS,
            partitions=1,
            copartitioned=False,
        )

    @property
    def audit(self) -> TopicSpec:
        return self._spec(
            "audit",
            key="account_id (a worker's on the deciding shard's partition, not the key's hash)",
            values=("streamwallet.audit.AuditEvent",),
            retention_ms=-1,
            copartitioned=False,
        )

    @property
    def redriven(self) -> TopicSpec:
        return self._spec(
            "deadletter.redriven",
            key='the re-driven original\'s "<topic>/<partition>@<offset>"',
            values=("streamwallet.deadletter.DeadLetter",),
            compacted=True,  # one record per re-driven letter, kept as long as the topic is
            partitions=1,
            copartitioned=False,
        )

    def all(self) -> list[TopicSpec]:
        return [*self.worker(), self.redriven]

    def worker(self) -> list[TopicSpec]:
        """The topics a worker reads or writes (its ACLs grant no more, so it checks no more)."""
        return [self.commands, self.legs, self.events, self.results, self.changelog, self.deadletter, self.audit]

    def _spec(
        self,
        suffix: str,
        *,
        key: str,
        values: tuple[str, ...],
        retention_ms: int | None = None,
        compacted: bool = False,
        log_append_time: bool = False,
        partitions: int | None = None,
        copartitioned: bool = True,
    ) -> TopicSpec:
        config = {
            "min.insync.replicas": str(self.min_insync_replicas),
            "cleanup.policy": "compact" if compacted else "delete",
            "message.timestamp.type": "LogAppendTime" if log_append_time else "CreateTime",
            "max.message.bytes": str(2 * 1024 * 1024),
        }
        if retention_ms is not None:
            config["retention.ms"] = str(retention_ms)
        if compacted:
            # Compact soon enough that restoring a shard reads little beyond its live keys.
            config["min.cleanable.dirty.ratio"] = "0.2"
            config["segment.ms"] = str(3600 * 1000)
            # Tombstones stay this long after compaction reaches them. A restore trusts a local
            # checkpoint only if it is younger than half of it (streams/restore.py
            # CHECKPOINT_AGE_MAX_MS): older, a tombstone it should have seen may be gone.
            config["delete.retention.ms"] = str(CHANGELOG_TOMBSTONE_RETENTION_MS)
        return TopicSpec(
            name=f"{self.prefix}.{suffix}",
            partitions=self.partitions if partitions is None else partitions,
            replication_factor=self.replication_factor,
            config=MappingProxyType(config),
            key=key,
            values=values,
            copartitioned=copartitioned,
        )
