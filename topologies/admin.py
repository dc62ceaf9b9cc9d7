"""Create the topology's topics idempotently, and refuse to run on a mismatched one."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from topologies.topics import TopicSpec, Topology

ADMIN_TIMEOUT_S = 30.0


class TopologyError(RuntimeError):
    """The cluster's topics do not match the declared topology."""


def ensure_topics(bootstrap_servers: str, topology: Topology) -> list[str]:
    """Create missing topics; check existing ones. Returns the names it created."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
    missing = [spec for spec in topology.all() if spec.name not in existing]
    created: list[str] = []
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(spec.name, spec.partitions, spec.replication_factor, config=dict(spec.config))
                for spec in missing
            ],
            request_timeout=ADMIN_TIMEOUT_S,
        )
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as error:
                if error.args[0].name() != "TOPIC_ALREADY_EXISTS":  # created meanwhile by another worker
                    raise
    _wait_for_metadata(admin, topology)
    verify_topics(admin, topology)
    return created


def _wait_for_metadata(admin: AdminClient, topology: Topology) -> None:
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    names = {spec.name for spec in topology.all()}
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        if all(name in topics and topics[name].error is None and topics[name].partitions for name in names):
            return
        time.sleep(0.1)
    raise TopologyError("topics did not appear in the cluster metadata in time")


# What must match for the ledger's guarantees to hold, topic by topic.
CHECKED_CONFIGS = ("cleanup.policy", "message.timestamp.type", "min.insync.replicas", "delete.retention.ms")


def verify_topics(admin: AdminClient, topology: Topology) -> None:
    """Refuse a cluster whose topics differ from the topology where it matters: partition
    counts (co-partitioning and key placement), replication factor and min.insync.replicas
    (what acks=all promises), cleanup policy, timestamp type (the shards' clock), and the
    changelog's delete.retention.ms (how long a restore can trust a checkpoint)."""
    topics = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
    problems = []
    for spec in topology.all():
        described = topics.get(spec.name)
        if described is None or described.error is not None:
            problems.append(f"{spec.name} does not exist (create it: streamwallet topics create)")
            continue
        count = len(described.partitions)
        if count != spec.partitions:
            problems.append(f"{spec.name} has {count} partitions, the topology says {spec.partitions}")
        factors = sorted({len(partition.replicas) for partition in described.partitions.values()})
        if factors != [spec.replication_factor]:
            problems.append(
                f"{spec.name} has replication factor {'/'.join(map(str, factors))}, "
                f"the configuration says {spec.replication_factor} (STREAMWALLET_REPLICATION_FACTOR)"
            )
    present = [spec for spec in topology.all() if spec.name in topics]
    if present:
        for spec, actual in _configs(admin, present):
            for key in CHECKED_CONFIGS:
                wanted = spec.config.get(key)
                if wanted is not None and actual[key].value != wanted:
                    problems.append(f"{spec.name}: {key} is {actual[key].value}, the topology says {wanted}")
    if problems:
        raise TopologyError("the cluster does not match the topology:\n  " + "\n  ".join(problems))


def _configs(admin: AdminClient, specs: list[TopicSpec]) -> list[tuple[TopicSpec, Any]]:
    """Each topic's configuration; a broker that has not seen a new topic's metadata yet
    answers UNKNOWN_TOPIC_OR_PART for a moment, so that is asked again (bounded)."""
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while True:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, spec.name) for spec in specs]
        futures = admin.describe_configs(resources, request_timeout=ADMIN_TIMEOUT_S)
        try:
            by_name = {resource.name: future.result() for resource, future in futures.items()}
            return [(spec, by_name[spec.name]) for spec in specs]
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def describe(spec: TopicSpec) -> str:
    return f"{spec.name} ({spec.partitions} partitions, RF {spec.replication_factor}): key = {spec.key}"
