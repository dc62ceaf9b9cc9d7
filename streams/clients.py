"""The worker's three Kafka clients and every option that matters to exactly-once.

* the transactional producer: one per worker (`transactional.id = <prefix>.ledger.<worker
  id>`), fenced by the group generation through KIP-447 offsets;
* the group consumer of the commands and legs topics, read_committed, positions set
  explicitly on every assignment (the changelog says where each partition is);
* the restore consumer of the changelog, which never joins a group.
"""

from __future__ import annotations

from typing import Any

from foundation.clients import kafka_config
from foundation.settings import Settings

TRANSACTION_LINGER_MS = 50  # longer than a turn under load: the commit sends the records


def consumer_group(settings: Settings) -> str:
    return f"{settings.topic_prefix}.ledger"


def transactional_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}.ledger.{settings.worker_id}"


def producer_config(settings: Settings) -> dict[str, Any]:
    return kafka_config(
        settings,
        **{
            "client.id": f"{settings.worker_id}-ledger",
            "transactional.id": transactional_id(settings),
            "transaction.timeout.ms": settings.transaction_timeout_ms,
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",  # Kafka's default partitioner, as Java and Faust use
            # A transaction's records leave at its commit (which flushes) in one produce request
            # per partition, not in a trickle of small ones while the batch is decided: each
            # request costs the broker, on the same cores, more than the records in it.
            # (1,800 transfers/s open loop, one worker: 3,091 produce requests/s and p99 772 ms
            # with linger.ms=2; 1,895/s and 239 ms with this, the generator unchanged.)
            "linger.ms": TRANSACTION_LINGER_MS,
            # The broker answers CONCURRENT_TRANSACTIONS until the previous commit's markers are
            # written (a few ms); librdkafka's default 100 ms back-off would add that to every batch.
            "retry.backoff.ms": 1,
            "socket.nagle.disable": True,
            "retry.backoff.max.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "message.max.bytes": 2 * 1024 * 1024,
        },
    )


def consumer_config(settings: Settings) -> dict[str, Any]:
    config = kafka_config(
        settings,
        **{
            "client.id": f"{settings.worker_id}-ledger",
            "group.id": consumer_group(settings),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # Never used to start a partition: every assignment sets explicit positions, read
            # from the changelog (streams/assignment.py). "error" makes a position that fell
            # below the log start (commands deleted by retention before this partition
            # consumed them) stop the worker with that message, instead of silently skipping
            # commands ("latest") or replaying ones older than the dedup window ("earliest").
            "auto.offset.reset": "error",
            # Range assigns partition p of every subscribed topic to the same member: the
            # commands and legs of a shard are co-partitioned.
            "partition.assignment.strategy": "range",
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": settings.heartbeat_interval_ms,
            "max.poll.interval.ms": 600_000,
            "fetch.wait.max.ms": 10,
            "fetch.min.bytes": settings.fetch_min_bytes,
            "enable.partition.eof": False,
        },
    )
    if settings.static_membership:
        config["group.instance.id"] = settings.worker_id
    return config


def restore_consumer_config(settings: Settings) -> dict[str, Any]:
    return kafka_config(
        settings,
        **{
            "client.id": f"{settings.worker_id}-restore",
            "group.id": f"{consumer_group(settings)}.restore",  # never joins: assign() only
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
            "auto.offset.reset": "earliest",
        },
    )
