"""Create the topology's topics idempotently, and refuse to run on a mismatched one."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
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
    _check(admin, topology)
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


def _check(admin: AdminClient, topology: Topology) -> None:
    topics = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
    problems = []
    for spec in topology.all():
        count = len(topics[spec.name].partitions)
        if count != spec.partitions:
            problems.append(f"{spec.name} has {count} partitions, the topology says {spec.partitions}")
    resources = [ConfigResource(ConfigResource.Type.TOPIC, spec.name) for spec in topology.all()]
    for resource, future in admin.describe_configs(resources, request_timeout=ADMIN_TIMEOUT_S).items():
        actual = future.result()
        spec = next(spec for spec in topology.all() if spec.name == resource.name)
        for key in ("cleanup.policy", "message.timestamp.type"):
            if actual[key].value != spec.config[key]:
                problems.append(f"{spec.name}: {key} is {actual[key].value}, the topology says {spec.config[key]}")
    if problems:
        raise TopologyError("the cluster does not match the topology:\n  " + "\n  ".join(problems))


def describe(spec: TopicSpec) -> str:
    return f"{spec.name} ({spec.partitions} partitions, RF {spec.replication_factor}): key = {spec.key}"
