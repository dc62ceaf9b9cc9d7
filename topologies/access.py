"""Who may do what on the topology's Kafka resources: every principal's ACLs, declared once.

The brokers deny whatever no ACL allows (`allow.everyone.if.no.acl.found=false`); these
grants are everything streamwallet's processes need, and nothing more:

    worker            reads commands and legs (its input) and the changelog (restore);
                      describes the topics' configs (it refuses mismatched ones at start);
                      writes legs, events, results, changelog, deadletter and audit, all inside
                      its transactions (transactional ids `<prefix>.ledger.<worker id>`);
                      its consumer group `<prefix>.ledger` (and `<prefix>.ledger.restore`,
                      which the restore consumer names but never joins).
    command-producer  writes commands; reads results, to learn its commands' outcomes
                      (the gateway is one; group `<prefix>.client`, assign() only);
                      writes audit (the gateway's refusals: 401, 403).
                      Cannot write legs, events or the changelog (it could create money or
                      set balances), cannot read the changelog, cannot use a worker's
                      transactional id (it would fence the worker) or join its group.
    event-consumer    reads events only, in groups named `<prefix>.event-consumers.<name>`.
    query             the query service: reads events and audit (the sink) and writes the dead letters
                      of undecodable events; reads the changelog for `reconcile`, which
                      compares the command side with the views (reading cannot change a
                      balance; drop that grant and run `streamwallet reconcile --via direct`
                      as an operator if you prefer); groups `<prefix>.sink` and
                      `<prefix>.reconcile`.

Nobody but the operator (a super user, or a principal with cluster rights) may create or
delete topics, change their configs, or grant ACLs. Idempotent producers need no
IdempotentWrite on the cluster: since Kafka 3.0 Write on a topic is enough (KIP-679).
Read implies Describe and Write implies Describe, so neither is granted separately.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from topologies.topics import Topology


class Role(enum.StrEnum):
    WORKER = "worker"
    COMMAND_PRODUCER = "command-producer"
    EVENT_CONSUMER = "event-consumer"
    QUERY = "query"


class Resource(enum.StrEnum):
    TOPIC = "topic"
    GROUP = "group"
    TRANSACTIONAL_ID = "transactional-id"


class Pattern(enum.StrEnum):
    LITERAL = "literal"  # exactly this name
    PREFIXED = "prefixed"  # every name that starts with it


class Operation(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    DESCRIBE_CONFIGS = "describe-configs"  # a worker checks the topics' configs at start

    @property
    def acl_name(self) -> str:
        """As kafka-acls.sh spells it."""
        return "".join(part.capitalize() for part in self.value.split("-"))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """One ALLOW ACL: `principal` may `operation` on the `resource` named (or prefixed) `name`."""

    role: Role
    principal: str  # "User:<name>"
    operation: Operation
    resource: Resource
    pattern: Pattern
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class ClientNames:
    """The consumer groups and transactional ids the processes use, derived from the prefix."""

    prefix: str

    @property
    def ledger_group(self) -> str:
        return f"{self.prefix}.ledger"

    @property
    def restore_group(self) -> str:
        return f"{self.prefix}.ledger.restore"

    @property
    def transactional_id_prefix(self) -> str:
        return f"{self.prefix}.ledger."

    @property
    def client_group(self) -> str:
        return f"{self.prefix}.client"

    @property
    def sink_group(self) -> str:
        return f"{self.prefix}.sink"

    @property
    def reconcile_group(self) -> str:
        return f"{self.prefix}.reconcile"

    @property
    def event_consumer_group_prefix(self) -> str:
        return f"{self.prefix}.event-consumers."


def default_principals(prefix: str) -> dict[Role, str]:
    """`User:<prefix>-<role>`: one Kafka user per role and deployment."""
    return {role: f"User:{prefix}-{role}" for role in Role}


def principals_from(assignments: list[str], *, prefix: str) -> dict[Role, str]:
    """The default principals, with `ROLE=User:NAME` assignments applied; ValueError on a
    malformed one."""
    principals = default_principals(prefix)
    for assignment in assignments:
        role, _, principal = assignment.partition("=")
        if role not in {member.value for member in Role} or not principal.startswith("User:"):
            roles = ", ".join(member.value for member in Role)
            raise ValueError(f"{assignment!r}: expected ROLE=User:NAME with ROLE one of {roles}")
        principals[Role(role)] = principal
    return principals


def grants(topology: Topology, principals: Mapping[Role, str]) -> list[Grant]:
    """Every ALLOW ACL of the topology, for the given principal of each role."""
    names = ClientNames(topology.prefix)
    literal, prefixed = Pattern.LITERAL, Pattern.PREFIXED
    read, write = Operation.READ, Operation.WRITE
    topic, group, transactional_id = Resource.TOPIC, Resource.GROUP, Resource.TRANSACTIONAL_ID
    table: dict[Role, list[tuple[Operation, Resource, Pattern, str]]] = {
        Role.WORKER: [
            (read, topic, literal, topology.commands.name),
            (read, topic, literal, topology.legs.name),
            (read, topic, literal, topology.changelog.name),
            (write, topic, literal, topology.legs.name),
            (write, topic, literal, topology.events.name),
            (write, topic, literal, topology.results.name),
            (write, topic, literal, topology.changelog.name),
            (write, topic, literal, topology.deadletter.name),
            (write, topic, literal, topology.audit.name),
            (read, group, literal, names.ledger_group),
            (read, group, literal, names.restore_group),
            (write, transactional_id, prefixed, names.transactional_id_prefix),
            # Start-up refuses topics whose replication settings differ (topologies/admin.py
            # verify_topics): reading configs changes nothing.
            (Operation.DESCRIBE_CONFIGS, topic, prefixed, f"{topology.prefix}."),
        ],
        Role.COMMAND_PRODUCER: [
            (write, topic, literal, topology.commands.name),
            (read, topic, literal, topology.results.name),
            (write, topic, literal, topology.audit.name),
            (read, group, literal, names.client_group),
        ],
        Role.EVENT_CONSUMER: [
            (read, topic, literal, topology.events.name),
            (read, group, prefixed, names.event_consumer_group_prefix),
        ],
        Role.QUERY: [
            (read, topic, literal, topology.events.name),
            (read, topic, literal, topology.audit.name),
            (write, topic, literal, topology.deadletter.name),
            (read, topic, literal, topology.changelog.name),
            (read, group, literal, names.sink_group),
            (read, group, literal, names.reconcile_group),
        ],
    }
    return [
        Grant(role=role, principal=principals[role], operation=operation, resource=resource, pattern=pattern, name=name)
        for role, rows in table.items()
        for operation, resource, pattern, name in rows
    ]


def kafka_acls_commands(declared: list[Grant], *, bootstrap_servers: str) -> list[str]:
    """The same grants as `kafka-acls.sh` command lines, for an operator to run against a
    managed cluster (with an admin's `--command-config`)."""
    lines = []
    for grant in declared:
        resource_option = {
            Resource.TOPIC: "--topic",
            Resource.GROUP: "--group",
            Resource.TRANSACTIONAL_ID: "--transactional-id",
        }[grant.resource]
        lines.append(
            f"kafka-acls.sh --bootstrap-server {bootstrap_servers} --command-config admin.properties --add "
            f"--allow-principal {grant.principal} --operation {grant.operation.acl_name} "
            f"{resource_option} {grant.name} --resource-pattern-type {grant.pattern.value}"
        )
    return lines
