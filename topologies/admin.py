"""Create the topology's topics and ACLs idempotently, and refuse to run on a mismatched
cluster. Every function takes a librdkafka client configuration (an operator's: creating
topics and ACLs needs cluster rights), e.g. `foundation.clients.kafka_config(settings)`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException
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


class TopologyError(RuntimeError):
    """The cluster's topics do not match the declared topology."""


class AccessError(RuntimeError):
    """The cluster's ACLs do not hold the declared grants."""


def ensure_topics(client_config: Mapping[str, Any], topology: Topology) -> list[str]:
    """Create missing topics; check existing ones. Returns the names it created."""
    admin = AdminClient(dict(client_config))
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
_OPERATIONS = {Operation.READ: AclOperation.READ, Operation.WRITE: AclOperation.WRITE}


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
