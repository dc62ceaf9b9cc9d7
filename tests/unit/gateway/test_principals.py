"""The verified principal on every command the gateway makes (gateway/principals.py), and
the record of who sent what.

The `principal` field on the ledger's command dataclasses is being added by the ledger;
these tests find it with `dataclasses.fields`: until it lands they check that no command
type has it (all land together, or the gateway would produce some without it), and from
then on that every command the gateway makes carries the principal of the credential.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, cast

import pytest

from gateway.errors import ApiError, GatewayCode
from gateway.principals import PRINCIPAL_FIELD, RecentSenders, build, carries_principal, client_fields, sender_of
from gateway.translate import parse_json, to_command
from ledger import commands
from ledger.commands import COMMAND_TYPES
from ledger.events import CommandResult
from ledger.principals import Principal, Role

ALICE = Principal(principal_id="alice", roles=frozenset({Role.OWNER}))
BOB = Principal(principal_id="bob", roles=frozenset({Role.OWNER}))
# One valid body of each command type.
BODIES: dict[type[commands.Command], dict[str, Any]] = {
    commands.OpenAccount: {"account_id": "a", "currency": "USD"},
    commands.UpdateLimits: {"account_id": "a", "lower_limit_minor": -5, "upper_limit_minor": 5, "currency": "USD"},
    commands.LockAccount: {"account_id": "a"},
    commands.UnlockAccount: {"account_id": "a"},
    commands.CloseAccount: {"account_id": "a"},
    commands.Deposit: {"account_id": "a", "amount": "1.00", "currency": "USD"},
    commands.Withdraw: {"account_id": "a", "amount": "1.00", "currency": "USD"},
    commands.Transfer: {"from_account_id": "a", "to_account_id": "b", "amount": "1.00", "currency": "USD"},
    commands.Batch: {
        "batch_id": "x",
        "legs": [
            {"account_id": "a", "amount": "-1", "currency": "USD"},
            {"account_id": "b", "amount": "1", "currency": "USD"},
        ],
    },
    commands.PlaceHold: {"account_id": "a", "hold_id": "h", "amount_minor": 1, "currency": "USD", "ttl_ms": 60_000},
    commands.CaptureHold: {
        "account_id": "a",
        "hold_id": "h",
        "amount_minor": 1,
        "to_account_id": "b",
        "currency": "USD",
    },
    commands.VoidHold: {"account_id": "a", "hold_id": "h"},
    commands.ReverseTransfer: {"account_id": "b", "transfer_id": "t"},
    commands.SetVelocityRules: {"account_id": "a", "day_count_max": 5, "freeze_on_trip": False, "currency": "USD"},
    commands.QueryCommand: {"account_id": "a", "target_command_id": "c"},
    commands.AssignOwner: {"account_id": "a", "owner": "alice"},
}


def body_of(cls: type[commands.Command]) -> dict[str, Any]:
    dedup = {} if cls is commands.QueryCommand else {"dedup_id": "d"}
    return {"type": cls.__name__, **dedup, **BODIES[cls]}


def test_the_principal_field_lands_on_every_command_type_at_once() -> None:
    carrying = {cls.__name__ for cls in COMMAND_TYPES if carries_principal(cls)}
    assert carrying in (set(), {cls.__name__ for cls in COMMAND_TYPES}), sorted(carrying)


@pytest.mark.parametrize("cls", COMMAND_TYPES, ids=[cls.__name__ for cls in COMMAND_TYPES])
def test_every_command_the_gateway_makes_carries_the_verified_principal(cls: type[commands.Command]) -> None:
    command = to_command(parse_json(json.dumps(body_of(cls)).encode()), principal=ALICE)
    assert type(command) is cls
    if carries_principal(cls):
        assert getattr(command, PRINCIPAL_FIELD) == ALICE
        assert PRINCIPAL_FIELD not in {field.name for field in client_fields(cls)}
    else:
        assert {field.name for field in client_fields(cls)} == {field.name for field in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls", COMMAND_TYPES, ids=[cls.__name__ for cls in COMMAND_TYPES])
@pytest.mark.parametrize("claimed", ["bob", {"principal_id": "bob", "roles": ["ADMIN"]}, None, ""])
def test_a_body_can_never_set_the_principal(cls: type[commands.Command], claimed: Any) -> None:
    with pytest.raises(ApiError) as caught:
        to_command({**body_of(cls), PRINCIPAL_FIELD: claimed}, principal=ALICE)
    assert (caught.value.status, caught.value.code) == (400, GatewayCode.PRINCIPAL_IN_BODY)


def test_the_lookup_the_gateway_makes_for_get_commands_carries_the_asker() -> None:
    query = build(commands.QueryCommand, principal=BOB, command_id="q", account_id="a", target_command_id="c")
    assert (getattr(query, PRINCIPAL_FIELD, None) == BOB) is carries_principal(commands.QueryCommand)


def test_recent_senders_keep_the_first_sender_and_forget_only_their_own() -> None:
    senders = RecentSenders(entries_max=2)
    mine = commands.Withdraw(command_id="c1", dedup_id="d", account_id="a", amount=1, currency="USD")
    senders.record(mine, ALICE)
    senders.record(mine, BOB)  # the same id from another principal: not recorded
    assert senders.sender("a", "c1") == "alice" and senders.sender("b", "c1") is None
    senders.forget(mine, BOB)
    assert senders.sender("a", "c1") == "alice"
    senders.forget(mine, ALICE)
    assert senders.sender("a", "c1") is None
    for index in range(3):
        senders.record(dataclasses.replace(mine, command_id=f"n{index}"), ALICE)
    assert senders.sender("a", "n0") is None and senders.sender("a", "n2") == "alice"  # bounded


def test_the_sender_a_result_names_once_results_carry_it() -> None:
    carrying = dataclasses.make_dataclass("Carrying", [(PRINCIPAL_FIELD, Any)])
    assert sender_of(cast(CommandResult, carrying(ALICE))) == "alice"
    assert sender_of(cast(CommandResult, carrying("bob"))) == "bob"
    assert sender_of(cast(CommandResult, carrying(None))) is None
