"""The ACL matrix on the real secured broker: every principal tries every topic (produce
and consume), every consumer group, two transactional ids and six operator actions, and
each cell is allowed or denied exactly as the table below says. A denial must be the
broker's own answer (an *_AUTHORIZATION_FAILED code, not a time-out), and a denied
produce or operator action must change nothing.

The table is written out here, independently of topologies/access.py; the first test checks
that the declaration grants exactly the same."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from deploy.local import kafka, security
from foundation.clients import check_kafka_access, kafka_config
from tests.conftest import Deployment, SecuredKafka, secured_deployment
from topologies import Topology
from topologies.access import ClientNames, Operation, Resource, Role, grants
from topologies.admin import existing_acls

pytestmark = pytest.mark.kafka

PROBE_TIMEOUT_S = 15.0
TOPICS = ("commands", "legs", "events", "results", "changelog", "deadletter", "audit")
MAY_PRODUCE = {
    Role.WORKER: {"legs", "events", "results", "changelog", "deadletter", "audit"},
    Role.COMMAND_PRODUCER: {"commands", "audit"},  # the gateway's refusals
    Role.EVENT_CONSUMER: set(),
    Role.QUERY: {"deadletter"},
}
MAY_CONSUME = {
    Role.WORKER: {"commands", "legs", "changelog"},
    Role.COMMAND_PRODUCER: {"results"},
    Role.EVENT_CONSUMER: {"events"},
    Role.QUERY: {"events", "changelog", "audit"},
}
GROUPS = ("ledger", "ledger.restore", "client", "sink", "reconcile", "event-consumers.matrix")
MAY_USE_GROUP = {
    Role.WORKER: {"ledger", "ledger.restore"},
    Role.COMMAND_PRODUCER: {"client"},
    Role.EVENT_CONSUMER: {"event-consumers.matrix"},
    Role.QUERY: {"sink", "reconcile"},
}
TRANSACTIONAL_IDS = ("ledger.matrix-worker", "client.matrix")  # the first has a worker's form
MAY_USE_TRANSACTIONAL_ID = {Role.WORKER: {"ledger.matrix-worker"}}
DENIALS = {
    "TOPIC_AUTHORIZATION_FAILED",
    "GROUP_AUTHORIZATION_FAILED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
}


@dataclasses.dataclass(frozen=True)
class Cell:
    kind: str  # produce, consume, group, transactional id, operator
    role: Role
    target: str
    expected: bool  # allowed
    allowed: bool
    answer: str  # the broker's error code on a denial, "ok" otherwise


@dataclasses.dataclass(frozen=True)
class World:
    deployment: Deployment
    secured: SecuredKafka
    topology: Topology
    operator: Consumer  # the operator's view of the topics' ends

    def topic(self, suffix: str) -> str:
        return f"{self.topology.prefix}.{suffix}"

    def end_offset(self, topic: str) -> int:
        """The high watermark of partition 0."""
        return int(self.operator.get_watermark_offsets(TopicPartition(topic, 0), timeout=PROBE_TIMEOUT_S)[1])


@pytest.fixture(scope="module")
def world(kafka_secured: SecuredKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    deployment = secured_deployment(kafka_secured, tmp_path_factory.mktemp("acls"))
    topology = Topology(prefix=deployment.settings.topic_prefix, partitions=deployment.settings.partitions)
    seeder = Producer(kafka_config(deployment.settings, acks="all"))
    for suffix in TOPICS:  # one record on partition 0 of each topic, for the consume probes to find
        seeder.produce(f"{topology.prefix}.{suffix}", f"seed-{suffix}".encode(), key=b"seed", partition=0)
    assert seeder.flush(PROBE_TIMEOUT_S) == 0
    operator = Consumer(kafka_config(deployment.settings, **{"group.id": f"operator-{uuid.uuid4().hex}"}))
    yield World(deployment, kafka_secured, topology, operator)
    operator.close()


def test_the_declaration_grants_exactly_the_table(world: World) -> None:
    declared = grants(world.topology, world.secured.principals())
    prefix = world.topology.prefix + "."

    def names(role: Role, operation: Operation, resource: Resource) -> set[str]:
        return {
            grant.name.removeprefix(prefix)
            for grant in declared
            if grant.role is role and grant.operation is operation and grant.resource is resource
        }

    for role in Role:
        assert names(role, Operation.WRITE, Resource.TOPIC) == MAY_PRODUCE[role], role
        assert names(role, Operation.READ, Resource.TOPIC) == MAY_CONSUME[role], role
        groups = {name.removesuffix("matrix") for name in MAY_USE_GROUP[role]}
        assert names(role, Operation.READ, Resource.GROUP) == groups, role
        transactional = {name.removesuffix("matrix-worker") for name in MAY_USE_TRANSACTIONAL_ID.get(role, set())}
        assert names(role, Operation.WRITE, Resource.TRANSACTIONAL_ID) == transactional, role


def test_every_principal_can_do_exactly_what_the_table_allows(world: World) -> None:
    cells = [
        *produce_cells(world),
        *consume_cells(world),
        *group_cells(world),
        *transactional_id_cells(world),
        *operator_cells(world),
    ]
    wrong = [cell for cell in cells if cell.allowed != cell.expected]
    assert wrong == []
    not_from_the_broker = [cell for cell in cells if not cell.allowed and cell.answer not in DENIALS]
    assert not_from_the_broker == []
    denied = [cell for cell in cells if not cell.allowed]
    print(
        f"\nACL matrix: {len(cells)} cells, {len(cells) - len(denied)} allowed, {len(denied)} denied by the broker "
        f"({', '.join(sorted({cell.answer for cell in denied}))})"
    )
    # The issue's own sentence, cell by cell: a command producer cannot write the legs, the
    # changelog or the events, nor read the changelog.
    producer = {(cell.kind, cell.target): cell.allowed for cell in cells if cell.role is Role.COMMAND_PRODUCER}
    assert not any(producer[("produce", topic)] for topic in ("legs", "changelog", "events"))
    assert not producer[("consume", "changelog")]


def produce_cells(world: World) -> Iterator[Cell]:
    """A denied produce leaves nothing: the topic's end does not move, and no probe value
    of a denied cell is ever read back."""
    written: dict[str, set[bytes]] = {suffix: set() for suffix in TOPICS}
    denied_values: dict[str, set[bytes]] = {suffix: set() for suffix in TOPICS}
    for role in Role:
        producer = Producer(world.deployment.client(role, acks="all", **{"enable.idempotence": False}))
        for suffix in TOPICS:
            value = f"probe-{role.value}-{uuid.uuid4().hex}".encode()
            before = world.end_offset(world.topic(suffix))
            reports: list[KafkaError | None] = []
            producer.produce(world.topic(suffix), value, key=b"probe", partition=0, on_delivery=reported(reports))
            producer.flush(PROBE_TIMEOUT_S)
            assert len(reports) == 1, f"{role} -> {suffix}: no delivery report within {PROBE_TIMEOUT_S}s"
            allowed = reports[0] is None
            moved = world.end_offset(world.topic(suffix)) - before
            assert moved == (1 if allowed else 0), (role, suffix, moved)
            (written if allowed else denied_values)[suffix].add(value)
            answer = "ok" if reports[0] is None else reports[0].name()
            yield Cell("produce", role, suffix, suffix in MAY_PRODUCE[role], allowed, answer)
    for suffix in TOPICS:
        values = {value for _, value in read_partition_zero(world, suffix)}
        assert written[suffix] <= values and not denied_values[suffix] & values, suffix


def reported(reports: list[KafkaError | None]) -> Callable[[KafkaError | None, object], None]:
    return lambda error, _: reports.append(error)


def read_partition_zero(world: World, suffix: str) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        kafka_config(
            world.deployment.settings,
            **{"group.id": f"reader-{uuid.uuid4().hex}", "enable.partition.eof": True, "enable.auto.commit": False},
        )
    )
    try:
        consumer.assign([TopicPartition(world.topic(suffix), 0, 0)])
        records: list[tuple[bytes, bytes]] = []
        while True:
            message = consumer.poll(PROBE_TIMEOUT_S)
            assert message is not None, f"{suffix}: partition 0 not read to its end"
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                return records
            records.append((message.key() or b"", message.value() or b""))
    finally:
        consumer.close()


def consume_cells(world: World) -> Iterator[Cell]:
    """Each role reads partition 0 from the start, in a group it may use: an allowed read
    returns the seed record, a denied one the broker's refusal."""
    names = ClientNames(world.topology.prefix)
    own_group = {
        Role.WORKER: names.restore_group,
        Role.COMMAND_PRODUCER: names.client_group,
        Role.EVENT_CONSUMER: names.event_consumer_group_prefix + "matrix",
        Role.QUERY: names.reconcile_group,
    }
    for role in Role:
        for suffix in TOPICS:
            consumer = Consumer(
                world.deployment.client(
                    role,
                    **{"group.id": own_group[role], "enable.auto.commit": False, "isolation.level": "read_committed"},
                )
            )
            try:
                allowed, answer = read_first_record(consumer, world.topic(suffix))
            finally:
                consumer.close()
            yield Cell("consume", role, suffix, suffix in MAY_CONSUME[role], allowed, answer)


def read_first_record(consumer: Consumer, topic: str) -> tuple[bool, str]:
    """A consumer that may not even describe the topic learns it from the metadata reply
    (librdkafka does not report that to an assign()ed consumer); one that may describe it
    but not read it, from the fetch reply."""
    metadata = consumer.list_topics(topic, timeout=PROBE_TIMEOUT_S).topics[topic]
    if metadata.error is not None:
        return False, str(metadata.error.name())
    consumer.assign([TopicPartition(topic, 0, 0)])
    message = consumer.poll(PROBE_TIMEOUT_S)
    assert message is not None, f"{topic}: neither a record nor an error within {PROBE_TIMEOUT_S}s"
    error = message.error()
    if error is not None:
        return False, str(error.name())
    assert message.value() == f"seed-{topic.rsplit('.', 1)[1]}".encode()
    return True, "ok"


def group_cells(world: World) -> Iterator[Cell]:
    """Each role commits an offset in each group (what consuming in a group needs: Read on
    the group; joining it needs the same)."""
    readable = {role: sorted(MAY_CONSUME[role])[0] for role in Role}
    for role in Role:
        admin = AdminClient(world.deployment.client(role))
        for group in GROUPS:
            offsets = ConsumerGroupTopicPartitions(
                f"{world.topology.prefix}.{group}", [TopicPartition(world.topic(readable[role]), 0, 0)]
            )
            allowed, answer = attempt(
                functools.partial(admin.alter_consumer_group_offsets, [offsets], request_timeout=PROBE_TIMEOUT_S)
            )
            yield Cell("group", role, group, group in MAY_USE_GROUP[role], allowed, answer)


def transactional_id_cells(world: World) -> Iterator[Cell]:
    """init_transactions with a worker's transactional id would fence that worker."""
    for role in Role:
        for transactional_id in TRANSACTIONAL_IDS:
            producer = Producer(
                world.deployment.client(role, **{"transactional.id": f"{world.topology.prefix}.{transactional_id}"})
            )
            allowed, answer = attempt(functools.partial(producer.init_transactions, PROBE_TIMEOUT_S))
            expected = transactional_id in MAY_USE_TRANSACTIONAL_ID.get(role, set())
            yield Cell("transactional id", role, transactional_id, expected, allowed, answer)


def operator_cells(world: World) -> Iterator[Cell]:
    """Nobody but the operator may change the cluster: after every denied attempt, the
    cluster is as it was."""
    operator = AdminClient(kafka_config(world.deployment.settings))
    events = world.topic("events")
    acls_before = existing_acls(operator)
    for role in Role:
        admin = AdminClient(world.deployment.client(role))
        for action, run in OPERATOR_ACTIONS.items():
            allowed, answer = attempt(functools.partial(run, admin, world, role))
            yield Cell("operator", role, action, False, allowed, answer)
    topics = operator.list_topics(timeout=PROBE_TIMEOUT_S).topics
    assert events in topics and not [name for name in topics if ".probe-" in name]
    described = operator.describe_configs([ConfigResource(ResourceType.TOPIC, events)])
    assert next(iter(described.values())).result()["retention.ms"].value == "-1"
    low, _ = world.operator.get_watermark_offsets(TopicPartition(events, 0), timeout=PROBE_TIMEOUT_S)
    assert low == 0
    assert existing_acls(operator) == acls_before
    check_kafka_access(world.deployment.as_role(Role.WORKER))  # its password still works


def create_a_topic(admin: AdminClient, world: World, role: Role) -> object:
    return _only(admin.create_topics([NewTopic(world.topic(f"probe-{role.value}"), 1, 1)]))


def delete_the_events_topic(admin: AdminClient, world: World, role: Role) -> object:
    return _only(admin.delete_topics([world.topic("events")]))


def shorten_the_events_retention(admin: AdminClient, world: World, role: Role) -> object:
    retention = ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, world.topic("events"), incremental_configs=[retention])
    return _only(admin.incremental_alter_configs([resource]))


def delete_records_of_the_events(admin: AdminClient, world: World, role: Role) -> object:
    """librdkafka looks the leader up first: a user who may not describe the topic gets the
    broker's refusal in the metadata reply (and librdkafka would report it as a local _NOENT)."""
    topic = world.topic("events")
    error = admin.list_topics(topic, timeout=PROBE_TIMEOUT_S).topics[topic].error
    if error is not None:
        raise KafkaException(error)
    return _only(admin.delete_records([TopicPartition(topic, 0, 1)], request_timeout=PROBE_TIMEOUT_S))


def grant_itself_write_on_the_changelog(admin: AdminClient, world: World, role: Role) -> object:
    binding = AclBinding(
        ResourceType.TOPIC,
        world.topic("changelog"),
        ResourcePatternType.LITERAL,
        f"User:{role.value}",
        "*",
        AclOperation.WRITE,
        AclPermissionType.ALLOW,
    )
    return _only(admin.create_acls([binding]))


def change_the_workers_password(admin: AdminClient, world: World, role: Role) -> object:
    credential = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, security.SCRAM_ITERATIONS)
    return _only(admin.alter_user_scram_credentials([UserScramCredentialUpsertion("worker", credential, b"taken")]))


OPERATOR_ACTIONS: dict[str, Callable[[AdminClient, World, Role], object]] = {
    "create a topic": create_a_topic,
    "delete the events topic": delete_the_events_topic,
    "set retention.ms=1 on the events topic": shorten_the_events_retention,
    "delete records of the events topic": delete_records_of_the_events,
    "grant itself Write on the changelog": grant_itself_write_on_the_changelog,
    "change the worker's password": change_the_workers_password,
}


def attempt(action: Callable[[], object]) -> tuple[bool, str]:
    """(allowed, the broker's answer) of one attempt; an admin call's futures are awaited."""
    try:
        result = action()
        if isinstance(result, dict):
            _only(result)
    except KafkaException as error:
        return False, error.args[0].name()
    return True, "ok"


def _only(futures: Mapping[Any, Future[Any]]) -> Any:
    """The result of the one future of an admin call."""
    (future,) = futures.values()
    return future.result()


def test_users_have_private_secret_files(world: World) -> None:
    folder: Path = world.secured.cluster.secrets_dir
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in folder.iterdir())
    assert all(
        (node.data_dir / "server.properties").stat().st_mode & 0o777 == 0o600 for node in world.secured.cluster.nodes
    )
    assert kafka.ADMIN_USER in {path.stem for path in folder.glob("*.password")}
