"""The shard's audit trail (ledger/audit.py): every privileged command (OPERATOR or ADMIN
only), allowed or denied, and every denied command (FORBIDDEN) is one AuditEvent in the
outcome, with the principal, the command, the outcome and the partition's clock; nothing
else is. Checked over the authorization grid of test_authorization.py (every command type
by every kind of principal, on its own account), and for determinism on replay."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.audit import AuditEvent, AuditOutcome, AuditSource
from ledger.authorization import RULES, is_privileged
from ledger.commands import LockAccount, OpenAccount, Withdraw
from ledger.errors import ErrorCode
from ledger.principals import Principal, Role
from tests.principals import TESTER
from tests.unit.ledger.cluster import Cluster, restart_fresh_ids
from tests.unit.ledger.test_authorization import COLUMNS, GRID, _command, _ids, _setup

PRIVILEGED_TYPES = {cls.__name__ for cls in RULES if is_privileged(cls)}


def _audit(cluster: Cluster) -> list[AuditEvent]:
    return [event for outcome in cluster.outcomes for event in outcome.audit]


def test_the_privileged_commands_are_the_operators_and_the_admins() -> None:
    assert {
        "OpenAccount",
        "AssignOwner",
        "Deposit",
        "UpdateLimits",
        "LockAccount",
        "UnlockAccount",
        "CloseAccount",
        "ReverseTransfer",
        "SetVelocityRules",
    } == PRIVILEGED_TYPES


@pytest.mark.parametrize("column", range(len(COLUMNS)), ids=["OWNER", "OPERATOR", "ADMIN", "AUDITOR", "none", "anon"])
@pytest.mark.parametrize("kind", [kind for kind in GRID if kind != "Batch across shards"])
def test_cell_is_audited_if_privileged_or_denied(kind: str, column: int) -> None:
    cluster = Cluster(3)
    sent = _setup(cluster)
    cluster.drain()
    principal = COLUMNS[column]
    command = dataclasses.replace(_command(kind, "o", sent), principal=principal)
    audited_before = len(_audit(cluster))

    cluster.submit(command)
    cluster.drain()

    denied = cluster.result(command.command_id).code is ErrorCode.FORBIDDEN
    audited = _audit(cluster)[audited_before:]
    if not denied and kind not in PRIVILEGED_TYPES:
        assert audited == []
        return
    (event,) = audited
    assert event == AuditEvent(
        principal=principal,
        action=type(command).__name__,
        account_id=command.routing_key,
        command_id=command.command_id,
        outcome=AuditOutcome.DENIED if denied else AuditOutcome.ALLOWED,
        code="FORBIDDEN" if denied else "",
        message=event.message,
        source=AuditSource.SHARD,
        occurred_at_ms=cluster.shards[0].clock_ms(),
    )
    assert bool(event.message) == denied


def test_a_batch_debiting_anothers_account_on_another_shard_is_audited_where_it_is_denied() -> None:
    cluster = Cluster(3)
    sent = _setup(cluster)
    cluster.drain()
    command = dataclasses.replace(_command("Batch across shards", "f", sent), principal=COLUMNS[0])
    audited_before = len(_audit(cluster))
    cluster.submit(command)
    cluster.drain()
    assert cluster.result(command.command_id).code is ErrorCode.FORBIDDEN
    (event,) = _audit(cluster)[audited_before:]
    assert (event.principal, event.action, event.account_id, event.command_id) == (
        COLUMNS[0],
        "Batch",
        "Xf@1",
        command.command_id,
    )
    assert (event.outcome, event.code, event.source) == (AuditOutcome.DENIED, "FORBIDDEN", AuditSource.SHARD)


def _script(cluster: Cluster) -> None:
    owner = Principal(principal_id="alice", roles=frozenset({Role.OWNER}))
    operator = Principal(principal_id="ops", roles=frozenset({Role.OPERATOR}))
    cluster.run(OpenAccount(**_ids(), account_id="A@0", currency="USD", owner="alice", principal=TESTER))
    cluster.run(LockAccount(**_ids(), account_id="A@0", principal=operator))
    cluster.run(LockAccount(**_ids(), account_id="A@0", principal=owner))
    cluster.run(Withdraw(**_ids(), account_id="A@0", amount=1, currency="USD", principal=operator))
    cluster.drain()


def test_a_replay_of_the_same_inputs_audits_the_same() -> None:
    first, second = Cluster(3), Cluster(3)
    restart_fresh_ids()
    _script(first)
    restart_fresh_ids()
    _script(second)
    trail = _audit(first)
    assert trail == _audit(second)
    assert [(event.action, event.principal.principal_id, event.outcome) for event in trail] == [
        ("OpenAccount", TESTER.principal_id, AuditOutcome.ALLOWED),
        ("LockAccount", "ops", AuditOutcome.ALLOWED),
        ("LockAccount", "alice", AuditOutcome.DENIED),
        ("Withdraw", "ops", AuditOutcome.DENIED),
    ]
