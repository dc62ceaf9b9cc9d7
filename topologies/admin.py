"""Create the topology's topics and ACLs idempotently, and refuse to run on a mismatched
cluster. Every function takes a librdkafka client configuration (an operator's: creating
topics and ACLs needs cluster rights), e.g. `foundation.clients.kafka_config(settings)`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from topologies.access import Grant, Operation, Pattern, Resource
from topologies.topics import TopicSpec, Topology

ADMIN_TIMEOUT_S = 30.0
ANY_HOST = "*"


T = TypeVar("T")


class TopologyError(RuntimeError):
    """The cluster's topics do not match the declared topology."""


class AccessError(RuntimeError):
    """The cluster's ACLs do not hold the declared grants."""


# A cluster that does not answer yet (the controller busy or moving, a loaded machine): asked
# again, within a bound, since creating topics is idempotent (TOPIC_ALREADY_EXISTS is success).
_UNANSWERED = frozenset({KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError.NOT_CONTROLLER})
# As long as a worker waits for a broker (streams/processor.py BROKER_OUTAGE_S_MAX): one ask may
# take ADMIN_TIMEOUT_S itself, so 60 s left a single ask after test_worker_faults' 35 s freeze,
# and on a loaded broker that ask went unanswered (CI). Why the broker answered so late is not
# known: alone, a broker with 2,000 partitions answers within about a second of the freeze's end.
UNANSWERED_RETRY_S_MAX = 4 * ADMIN_TIMEOUT_S
UNANSWERED_BACKOFF_S = 0.5
# How long a check waits for topics the metadata does not show yet: a broker learns of topics
# another has just created moments later (seen in CI right after a three-broker cluster's start).
TOPIC_METADATA_WAIT_S = 15.0


def ensure_topics(client_config: Mapping[str, Any], topology: Topology) -> list[str]:
    """Create missing topics; check existing ones. Returns the names it created. Each ask has
    a client of its own (see `fresh_admin`)."""
    return _asking_again(
        lambda: _ensure_topics(fresh_admin(client_config), topology),
        again=lambda error: error.retriable() or error.code() in _UNANSWERED or _all_brokers_fenced(error),
        budget_s=UNANSWERED_RETRY_S_MAX,
        backoff_s=UNANSWERED_BACKOFF_S,
    )


def fresh_admin(client_config: Mapping[str, Any]) -> AdminClient:
    """A new admin client, for one ask of a loop that asks again while the cluster does not
    answer. A client kept across the asks can be deaf for good: a KRaft broker back from a
    pause is fenced for a moment, a Metadata answer from that moment lists no brokers, and
    librdkafka 2.16 then forgets every broker it knew and never asks the bootstrap servers
    again (confluentinc/librdkafka#5301). Seen in test_worker_faults' frozen start, once in 30
    runs here: `topics create` failed with "Broker transport failure" for the 90 s after the
    pause while the broker answered every other client; in one CI run of four the worker
    started in that pause was not ready 120 s after it. A new client starts from the bootstrap
    servers."""
    return AdminClient(dict(client_config))


def _all_brokers_fenced(error: KafkaError) -> bool:
    """A broker back from a pause is fenced by the controller until its next heartbeat, and a
    topic created meanwhile is refused as INVALID_REPLICATION_FACTOR, "All brokers are currently
    fenced" (seen in CI after test_worker_faults froze the broker for 35 s): an outage like the
    others, asked again. A replication factor above the broker count is refused at once."""
    return error.code() == KafkaError.INVALID_REPLICATION_FACTOR and "fenced" in error.str()


def _asking_again(
    call: Callable[[], T], *, again: Callable[[KafkaError], bool], budget_s: float, backoff_s: float
) -> T:
    """`call()`, asked again while it fails with an error `again` accepts, for `budget_s` at most."""
    deadline = time.monotonic() + budget_s
    while True:
        try:
            return call()
        except KafkaException as exception:
            if not again(exception.args[0]) or time.monotonic() > deadline:
                raise
            time.sleep(backoff_s)


def _ensure_topics(admin: AdminClient, topology: Topology) -> list[str]:
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
    verify_topics(admin, topology.all())
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


def verify_topics(admin: AdminClient, specs: list[TopicSpec], *, wait_s: float = TOPIC_METADATA_WAIT_S) -> None:
    """Refuse a cluster whose topics (`specs`: all of a topology's, or only those one process
    uses, which are all its ACLs let it see) differ from the topology where it matters: partition
    counts (co-partitioning and key placement), replication factor and min.insync.replicas
    (what acks=all promises), cleanup policy, timestamp type (the shards' clock), and the
    changelog's delete.retention.ms (how long a restore can trust a checkpoint)."""
    topics = _listing(admin, specs, wait_s)
    problems = []
    for spec in specs:
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
    present = [spec for spec in specs if spec.name in topics]
    if present:
        for spec, actual in _configs(admin, present):
            for key in CHECKED_CONFIGS:
                wanted = spec.config.get(key)
                if wanted is not None and actual[key].value != wanted:
                    problems.append(f"{spec.name}: {key} is {actual[key].value}, the topology says {wanted}")
    if problems:
        raise TopologyError("the cluster does not match the topology:\n  " + "\n  ".join(problems))


def _listing(admin: AdminClient, specs: list[TopicSpec], wait_s: float) -> dict[str, Any]:
    """The cluster's topics, asked again for `wait_s` at most while some of `specs`
    are absent: the broker that answers may not know yet of topics another has just created
    (tests/integration/test_topology_checks.py, the topics that reach the metadata late)."""
    deadline = time.monotonic() + wait_s
    while True:
        topics: dict[str, Any] = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        absent = [spec for spec in specs if spec.name not in topics or topics[spec.name].error is not None]
        if not absent or time.monotonic() > deadline:
            return topics
        time.sleep(0.2)


def _configs(admin: AdminClient, specs: list[TopicSpec]) -> list[tuple[TopicSpec, Any]]:
    """Each topic's configuration; a broker that has not seen a new topic's metadata yet
    answers UNKNOWN_TOPIC_OR_PART for a moment, so that is asked again (bounded)."""
    resources = [ConfigResource(ConfigResource.Type.TOPIC, spec.name) for spec in specs]

    def describe() -> list[tuple[TopicSpec, Any]]:
        futures = admin.describe_configs(resources, request_timeout=ADMIN_TIMEOUT_S)
        by_name = {resource.name: future.result() for resource, future in futures.items()}
        return [(spec, by_name[spec.name]) for spec in specs]

    return _asking_again(
        describe,
        again=lambda error: error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART,
        budget_s=ADMIN_TIMEOUT_S,
        backoff_s=0.2,
    )


def describe(spec: TopicSpec) -> str:
    return f"{spec.name} ({spec.partitions} partitions, RF {spec.replication_factor}): key = {spec.key}"


def ensure_acls(client_config: Mapping[str, Any], declared: list[Grant]) -> list[Grant]:
    """Create the declared ALLOW ACLs that are missing (topologies.access.grants) and wait
    until the broker enforces them all. Returns the grants it created. ACLs beyond the
    declaration are left alone: other deployments may share the principals."""
    admin = AdminClient(dict(client_config))
    existing = existing_acls(admin)
    missing = [grant for grant in declared if _binding(grant) not in existing]
    if missing:
        for future in admin.create_acls(
            [_binding(grant) for grant in missing], request_timeout=ADMIN_TIMEOUT_S
        ).values():
            future.result()
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while any(_binding(grant) not in existing for grant in declared):
        if time.monotonic() > deadline:
            absent = [grant for grant in declared if _binding(grant) not in existing]
            raise AccessError(f"{len(absent)} declared ACLs are still not enforced, e.g. {absent[0]}")
        time.sleep(0.05)
        existing = existing_acls(admin)
    return missing


def existing_acls(admin: AdminClient) -> set[AclBinding]:
    """Every ACL of the cluster (the admin's user must be allowed to describe them)."""
    # None matches any name, principal and host (the client's type hints say str).
    every = AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]
        ResourcePatternType.ANY,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    return set(admin.describe_acls(every, request_timeout=ADMIN_TIMEOUT_S).result())


_RESOURCE_TYPES = {
    Resource.TOPIC: ResourceType.TOPIC,
    Resource.GROUP: ResourceType.GROUP,
    Resource.TRANSACTIONAL_ID: ResourceType.TRANSACTIONAL_ID,
}
_PATTERN_TYPES = {Pattern.LITERAL: ResourcePatternType.LITERAL, Pattern.PREFIXED: ResourcePatternType.PREFIXED}
_OPERATIONS = {
    Operation.READ: AclOperation.READ,
    Operation.WRITE: AclOperation.WRITE,
    Operation.DESCRIBE_CONFIGS: AclOperation.DESCRIBE_CONFIGS,
}


def _binding(grant: Grant) -> AclBinding:
    return AclBinding(
        _RESOURCE_TYPES[grant.resource],
        grant.name,
        _PATTERN_TYPES[grant.pattern],
        grant.principal,
        ANY_HOST,
        _OPERATIONS[grant.operation],
        AclPermissionType.ALLOW,
    )
