"""Who may do what at the shard (ledger/authorization.py), as a full matrix: every role
alone, no role, and the anonymous principal (a v1 command), by every command type, on an
account of the principal's own or another's. The expected grid is written out by hand
here, not derived from the code's table. Each cell runs on a fresh three-shard cluster:
an allowed command is accepted; a denied one is FORBIDDEN and changes nothing — no event,
no state, not even the dedup memory (a retry by the right principal is not a duplicate).

    y    allowed
    -    refused (FORBIDDEN)
    own  allowed on its own account (QueryCommand: about a command it sent) only
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from ledger.authorization import RULES
from ledger.commands import (
    AssignOwner,
    Batch,
    BatchLeg,
    CaptureHold,
    CloseAccount,
    Command,
    Deposit,
    LockAccount,
    OpenAccount,
    PlaceHold,
    QueryCommand,
    ReverseTransfer,
    SetVelocityRules,
    Transfer,
    UnlockAccount,
    UpdateLimits,
    VoidHold,
    Withdraw,
)
from ledger.errors import ErrorCode
from ledger.events import ResultStatus
from ledger.principals import ANONYMOUS, Principal, Role
from ledger.state import Table
from tests.principals import TESTER
from tests.unit.ledger.cluster import Cluster, fresh

ME, THEM = "alice", "mallory"
COLUMNS: tuple[Principal, ...] = (
    *(Principal(principal_id=ME, roles=frozenset({role})) for role in Role),
    Principal(principal_id=ME, roles=frozenset()),
    ANONYMOUS,
)
#                 OWNER  OPERATOR ADMIN  AUDITOR  none  anonymous
GRID: dict[str, tuple[str, str, str, str, str, str]] = {
    "OpenAccount": ("-", "-", "y", "-", "-", "-"),
    "AssignOwner": ("-", "-", "y", "-", "-", "-"),
    "UpdateLimits": ("-", "y", "-", "-", "-", "-"),
    "LockAccount": ("-", "y", "-", "-", "-", "-"),
    "UnlockAccount": ("-", "y", "-", "-", "-", "-"),
    "CloseAccount": ("-", "y", "-", "-", "-", "-"),
    "Deposit": ("-", "y", "-", "-", "-", "-"),
    "ReverseTransfer": ("-", "y", "-", "-", "-", "-"),
    "SetVelocityRules": ("-", "y", "-", "-", "-", "-"),
    "Withdraw": ("own", "-", "-", "-", "-", "-"),
    "Transfer": ("own", "-", "-", "-", "-", "-"),
    "Batch": ("own", "-", "-", "-", "-", "-"),
    "Batch across shards": ("own", "-", "-", "-", "-", "-"),
    "PlaceHold": ("own", "-", "-", "-", "-", "-"),
    "CaptureHold": ("own", "-", "-", "-", "-", "-"),
    "VoidHold": ("own", "-", "-", "-", "-", "-"),
    "QueryCommand": ("own", "y", "own", "y", "own", "-"),  # own: a command it sent
}
OWNERSHIPS = ("own", "foreign")
MY_OWNER = COLUMNS[0]


def _ids() -> dict[str, Any]:
    return {"command_id": fresh("c-"), "dedup_id": fresh("d-")}


def _setup(cluster: Cluster) -> dict[str, str]:
    """Accounts of ME and of THEM (suffix o / f) on shard 0, one each on shard 1, B@0 to
    receive; each funded, with a hold, a transfer to reverse; empty and locked ones to close
    and unlock; and a withdrawal each owner sent (for QueryCommand). Returns the command ids."""
    sent: dict[str, str] = {}
    for suffix, owner in (("o", ME), ("f", THEM)):
        for account in (f"T{suffix}@0", f"X{suffix}@1", f"Z{suffix}@0", f"L{suffix}@0"):
            cluster.run(OpenAccount(**_ids(), account_id=account, currency="USD", owner=owner, principal=TESTER))
        for account in (f"T{suffix}@0", f"X{suffix}@1"):
            cluster.run(Deposit(**_ids(), account_id=account, amount=100, currency="USD", principal=TESTER))
        cluster.run(LockAccount(**_ids(), account_id=f"L{suffix}@0", principal=TESTER))
        holder = Principal(principal_id=owner, roles=frozenset({Role.OWNER}))
        hold = PlaceHold(**_ids(), account_id=f"T{suffix}@0", hold_id="h", amount=5, currency="USD", ttl_ms=60_000)
        withdrawal = Withdraw(**_ids(), account_id=f"T{suffix}@0", amount=1, currency="USD", principal=holder)
        for command in (dataclasses.replace(hold, principal=holder), withdrawal):
            assert cluster.run(command).status is ResultStatus.ACCEPTED
        sent[suffix] = withdrawal.command_id
    cluster.run(OpenAccount(**_ids(), account_id="B@0", currency="USD", owner=ME, principal=TESTER))
    cluster.run(Deposit(**_ids(), account_id="B@0", amount=100, currency="USD", principal=TESTER))
    for suffix in ("o", "f"):
        moved = Transfer(
            **_ids(), from_account_id="B@0", to_account_id=f"T{suffix}@0", amount=2, currency="USD", principal=MY_OWNER
        )
        assert cluster.run(moved).status is ResultStatus.ACCEPTED
        sent[f"transfer-{suffix}"] = moved.command_id
    return sent


def _command(kind: str, suffix: str, sent: dict[str, str]) -> Command:
    account = f"T{suffix}@0"
    builders: dict[str, Callable[[], Command]] = {
        "OpenAccount": lambda: OpenAccount(**_ids(), account_id=f"N{suffix}@0", currency="USD", owner=ME),
        "AssignOwner": lambda: AssignOwner(**_ids(), account_id=account, owner="bob"),
        "UpdateLimits": lambda: UpdateLimits(
            **_ids(), account_id=account, lower_limit=-10, upper_limit=10_000, currency="USD"
        ),
        "LockAccount": lambda: LockAccount(**_ids(), account_id=account),
        "UnlockAccount": lambda: UnlockAccount(**_ids(), account_id=f"L{suffix}@0"),
        "CloseAccount": lambda: CloseAccount(**_ids(), account_id=f"Z{suffix}@0"),
        "Deposit": lambda: Deposit(**_ids(), account_id=account, amount=5, currency="USD"),
        "ReverseTransfer": lambda: ReverseTransfer(
            **_ids(), account_id=account, transfer_id=sent[f"transfer-{suffix}"]
        ),
        "SetVelocityRules": lambda: SetVelocityRules(
            **_ids(), account_id=account, hour_amount_max=1_000, currency="USD"
        ),
        "Withdraw": lambda: Withdraw(**_ids(), account_id=account, amount=5, currency="USD"),
        "Transfer": lambda: Transfer(**_ids(), from_account_id=account, to_account_id="B@0", amount=5, currency="USD"),
        "Batch": lambda: Batch(**_ids(), batch_id=fresh("b-") + "@0", legs=_legs(account)),
        "Batch across shards": lambda: Batch(**_ids(), batch_id=fresh("b-") + "@0", legs=_legs(f"X{suffix}@1")),
        "PlaceHold": lambda: PlaceHold(
            **_ids(), account_id=account, hold_id="h2", amount=5, currency="USD", ttl_ms=60_000
        ),
        "CaptureHold": lambda: CaptureHold(
            **_ids(), account_id=account, hold_id="h", amount=5, to_account_id="B@0", currency="USD"
        ),
        "VoidHold": lambda: VoidHold(**_ids(), account_id=account, hold_id="h"),
        "QueryCommand": lambda: QueryCommand(
            command_id=fresh("q-"), account_id=account, target_command_id=sent[suffix]
        ),
    }
    return builders[kind]()


def _legs(debited: str) -> list[BatchLeg]:
    return [
        BatchLeg(account_id=debited, amount=-5, currency="USD"),
        BatchLeg(account_id="B@0", amount=5, currency="USD"),
    ]


def _state(cluster: Cluster) -> list[list[tuple[int, str, object]]]:
    """Everything the shards keep but their clocks (time passes for every input)."""
    return [cluster.rows(table) for table in Table if table is not Table.META]


def _money(cluster: Cluster) -> dict[str, tuple[int, int, int, int]]:
    return {a.account_id: (a.balance, a.held, a.pending_in, a.pending_out) for a in cluster.accounts()}


def test_the_grid_covers_every_command_type() -> None:
    assert {cls.__name__ for cls in RULES} <= set(GRID)
    assert len(GRID) * len(COLUMNS) * len(OWNERSHIPS) == 17 * 6 * 2


@pytest.mark.parametrize("ownership", OWNERSHIPS)
@pytest.mark.parametrize("column", range(len(COLUMNS)), ids=["OWNER", "OPERATOR", "ADMIN", "AUDITOR", "none", "anon"])
@pytest.mark.parametrize("kind", GRID)
def test_cell(kind: str, column: int, ownership: str) -> None:
    cluster = Cluster(3)
    sent = _setup(cluster)
    cluster.drain()
    principal = COLUMNS[column]
    command = dataclasses.replace(_command(kind, "o" if ownership == "own" else "f", sent), principal=principal)
    before, events_before, money_before = _state(cluster), len(cluster.events), _money(cluster)

    cluster.submit(command)
    cluster.drain()
    result = cluster.result(command.command_id)

    cell = GRID[kind][column]
    if cell == "y" or (cell == "own" and ownership == "own"):
        assert result.status is ResultStatus.ACCEPTED, result
    else:
        assert (result.status, result.code) == (ResultStatus.REJECTED, ErrorCode.FORBIDDEN), result
        if kind == "Batch across shards":  # refused at the debit's prepare: the credit's reservation is released
            assert _money(cluster) == money_before
        else:
            assert _state(cluster) == before, "a denied command changed the state"
            assert len(cluster.events) == events_before, "a denied command emitted an event"


def test_every_result_and_event_says_whose_command_caused_it() -> None:
    """Issue 12: results name the sender, events the principal of the command that caused
    them, across shards too (a transfer's credit and settle, a batch's prepare and commit,
    a refund); what time alone causes (a hold's expiry) is the anonymous principal's."""
    cluster = Cluster(3)
    _setup(cluster)
    cluster.run(OpenAccount(**_ids(), account_id="Lx@1", currency="USD", owner=THEM, principal=TESTER))
    cluster.run(LockAccount(**_ids(), account_id="Lx@1", principal=TESTER))
    cluster.drain()
    events_before = len(cluster.events)
    moves: list[Command] = [
        Transfer(**_ids(), from_account_id="To@0", to_account_id="Xf@1", amount=3, currency="USD"),
        Transfer(**_ids(), from_account_id="To@0", to_account_id="Lx@1", amount=1, currency="USD"),  # refunded
        Batch(**_ids(), batch_id=fresh("b-") + "@2", legs=_legs("Xo@1")),
        PlaceHold(**_ids(), account_id="To@0", hold_id="soon", amount=1, currency="USD", ttl_ms=1),
    ]
    for move in moves:
        cluster.submit(dataclasses.replace(move, principal=MY_OWNER))
        cluster.drain()
    results = [cluster.result(move.command_id) for move in moves]
    assert [result.code for result in results] == [None, ErrorCode.ACCOUNT_LOCKED, None, None]
    assert {result.principal for result in results} == {MY_OWNER}
    caused = cluster.events[events_before:]
    assert {event.kind.value for event in caused} >= {
        "TRANSFER_DEBITED",
        "TRANSFER_CREDITED",
        "TRANSFER_SETTLED",
        "TRANSFER_REFUNDED",
        "BATCH_PREPARED",
        "BATCH_COMMITTED",
        "HOLD_PLACED",
    }
    assert {event.principal for event in caused} == {MY_OWNER}
    cluster.advance(10)  # the hold expires
    expired = [event for event in cluster.events if event.kind.value == "HOLD_EXPIRED"]
    assert expired and {event.principal for event in expired} == {ANONYMOUS}
