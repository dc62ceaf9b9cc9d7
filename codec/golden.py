"""Golden vectors: one encoded example per record type, with its Avro JSON encoding, so
that decoders in other languages can check themselves against ours.

    python -m codec.golden            check schemas/avro/golden/vectors.json is current
    python -m codec.golden --write    rewrite it (after a deliberate schema change)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

from fastavro import json_writer

from codec.avro import Codec
from codec.bundle import CommandBundle
from codec.deadletter import DeadLetter
from codec.schemas import SCHEMA_ROOT
from ledger import commands, legs
from ledger.accounts import Account, AccountStatus, Hold, HoldStatus
from ledger.audit import AuditEvent, AuditOutcome, AuditSource
from ledger.chain import chain
from ledger.errors import ErrorCode
from ledger.events import AccountEvent, CommandResult, EventKind, Position, ResultStatus
from ledger.principals import ANONYMOUS, Principal, Role
from ledger.state import (
    BatchPhase,
    BatchState,
    CommandIndexEntry,
    CreditMark,
    DedupEntry,
    ExpiryEntry,
    OutgoingTransfer,
    PreparedLeg,
    PreparedStatus,
    RetainedKey,
    RetentionEntry,
    ShardMeta,
    Table,
    TransferRecord,
)
from ledger.velocity import VelocityBucket, VelocityState

VECTORS_PATH = SCHEMA_ROOT / "golden" / "vectors.json"
AT_MS = 1_795_600_000_000  # 2026-11-25T...Z

# Principals as the gateway sets them; roles are written in sorted order.
_ALICE = Principal(principal_id="alice", roles=frozenset({Role.OWNER}))
_OPERATOR = Principal(principal_id="ops-desk", roles=frozenset({Role.OPERATOR, Role.AUDITOR}))
_ADMIN = Principal(principal_id="onboarding-service", roles=frozenset({Role.ADMIN}))
_POSITION = Position(account_id="alice", sequence=7, balance=12_34, available=10_00)
_RESULT = CommandResult(
    command_id="cmd-1",
    dedup_id="dedup-1",
    command_type="Transfer",
    status=ResultStatus.ACCEPTED,
    code=None,
    message="",
    reference_id="cmd-1",
    positions=[_POSITION, Position(account_id="bob", sequence=3, balance=500, available=500)],
    replayed=False,
    original_command_id="cmd-1",
    decided_at_ms=AT_MS,
    queried=None,
    principal=_ALICE,
)
_LEGS = [
    commands.BatchLeg(account_id="alice", amount=-300, currency="USD"),
    commands.BatchLeg(account_id="bob", amount=300, currency="USD"),
]

_VELOCITY_RULES: dict[str, Any] = {
    "account_id": "alice",
    "hour_amount_max": 50_000,
    "hour_count_max": 10,
    "day_amount_max": 200_000,
    "day_count_max": 0,
    "freeze_on_trip": True,
}
_PREVIOUS_HASH = hashlib.sha256(b"the hash of alice's event 6").hexdigest()

EXAMPLES: list[Any] = [
    commands.OpenAccount(
        command_id="cmd-1",
        dedup_id="open-alice",
        account_id="alice",
        currency="USD",
        lower_limit=-5_000,
        upper_limit=1_000_000,
        parent_account_id="family",
        metadata={"owner": "Alice"},
        principal=_ADMIN,
        owner="alice",
    ),
    commands.UpdateLimits(
        command_id="cmd-2",
        dedup_id="limits",
        account_id="alice",
        lower_limit=0,
        upper_limit=500_000,
        currency="USD",
        principal=_OPERATOR,
    ),
    commands.LockAccount(
        command_id="cmd-3", dedup_id="lock", account_id="alice", reason="fraud review", principal=_OPERATOR
    ),
    commands.UnlockAccount(
        command_id="cmd-4", dedup_id="unlock", account_id="alice", reason="cleared", principal=_OPERATOR
    ),
    commands.CloseAccount(command_id="cmd-5", dedup_id="close", account_id="alice", reason="", principal=_OPERATOR),
    commands.Deposit(
        command_id="cmd-6",
        dedup_id="dep-1",
        account_id="alice",
        amount=12_34,
        currency="USD",
        metadata={"source": "card"},
        principal=_OPERATOR,
    ),
    commands.Withdraw(
        command_id="cmd-7", dedup_id="wd-1", account_id="alice", amount=1_000, currency="JPY", principal=_ALICE
    ),
    commands.Transfer(
        command_id="cmd-8",
        dedup_id="tr-1",
        from_account_id="alice",
        to_account_id="bob",
        amount=1_234,
        currency="KWD",
        metadata={"memo": "rent"},
        principal=_ALICE,
    ),
    commands.Batch(command_id="cmd-9", dedup_id="batch-1", batch_id="batch-1", legs=_LEGS, principal=_ALICE),
    CommandBundle(
        bundle_id="bundle-1",
        # One Deposit (cmd-b1, 500 USD to alice) in single-object encoding; to a bundle its
        # commands are bytes, each decoded by its own header when the bundle is unpacked.
        commands=[bytes.fromhex("c301e7500e24d13337b50c636d642d62310c6465702d62310a616c696365e8070655534400")],
    ),
    commands.PlaceHold(
        command_id="cmd-10",
        dedup_id="hold-1",
        account_id="alice",
        hold_id="auth-1",
        amount=500,
        currency="USD",
        ttl_ms=600_000,
        principal=_ALICE,
    ),
    commands.CaptureHold(
        command_id="cmd-11",
        dedup_id="cap-1",
        account_id="alice",
        hold_id="auth-1",
        amount=400,
        to_account_id="merchant",
        currency="USD",
        principal=_ALICE,
    ),
    commands.VoidHold(command_id="cmd-12", dedup_id="void-1", account_id="alice", hold_id="auth-1", principal=_ALICE),
    commands.ReverseTransfer(
        command_id="cmd-13",
        dedup_id="rev-1",
        account_id="bob",
        transfer_id="cmd-8",
        reason="duplicate payment",
        principal=_OPERATOR,
    ),
    commands.QueryCommand(command_id="cmd-14", account_id="alice", target_command_id="cmd-8", principal=_ALICE),
    # A command written before commands carried a principal decodes to the anonymous one.
    commands.Withdraw(
        command_id="cmd-7b", dedup_id="wd-2", account_id="alice", amount=1, currency="USD", principal=ANONYMOUS
    ),
    commands.AssignOwner(command_id="cmd-18", dedup_id="owner-1", account_id="alice", owner="bob", principal=_ADMIN),
    commands.SetVelocityRules(
        command_id="cmd-16",
        dedup_id="velocity-1",
        **_VELOCITY_RULES,
        currency="USD",
        principal=_OPERATOR,
    ),
    AccountEvent(
        account_id="alice",
        sequence=7,
        kind=EventKind.TRANSFER_DEBITED,
        amount=-1_234,
        held_change=0,
        currency="USD",
        balance=12_34,
        held=2_34,
        available=10_00,
        pending_in=0,
        pending_out=1_234,
        lower_limit=0,
        upper_limit=2**63 - 1,
        status=AccountStatus.ACTIVE,
        parent_account_id="family",
        metadata={"memo": "rent"},
        command_id="cmd-8",
        dedup_id="tr-1",
        correlation_id="cmd-8",
        counterparty_account_id="bob",
        code=None,
        occurred_at_ms=AT_MS,
        previous_hash=_PREVIOUS_HASH,
        hash="",  # set below: SHA-256 of the content (ledger/chain.py)
        owner="alice",
        principal=_ALICE,
    ),
    _RESULT,
    CommandResult(
        command_id="cmd-15",
        dedup_id="",
        command_type="QueryCommand",
        status=ResultStatus.ACCEPTED,
        code=None,
        message="found",
        reference_id="cmd-1",
        positions=[],
        replayed=False,
        original_command_id="cmd-15",
        decided_at_ms=AT_MS,
        queried=_RESULT,
    ),
    CommandResult(
        command_id="cmd-16",
        dedup_id="dep-2",
        command_type="Withdraw",
        status=ResultStatus.REJECTED,
        code=ErrorCode.INSUFFICIENT_FUNDS,
        message="account alice has 10 available above its lower limit",
        reference_id=None,
        positions=[],
        replayed=True,
        original_command_id="cmd-0",
        decided_at_ms=AT_MS,
        queried=None,
    ),
    CommandResult(
        command_id="cmd-17",
        dedup_id="dep-3",
        command_type="Deposit",
        status=ResultStatus.REJECTED,
        code=ErrorCode.DEDUP_WINDOW_FULL,  # added after v1: a v1 reader sees UNKNOWN
        message="this partition remembers 64800000 commands and records for the 86400000 ms idempotency window",
        reference_id=None,
        positions=[],
        replayed=False,
        original_command_id="cmd-17",
        decided_at_ms=AT_MS,
        queried=None,
    ),
    legs.CreditLeg(
        transfer_id="cmd-8",
        flow=legs.Flow.TRANSFER,
        from_account_id="alice",
        to_account_id="bob",
        amount=1_234,
        currency="USD",
        command_id="cmd-8",
        dedup_id="tr-1",
        command_type="Transfer",
        source_position=_POSITION,
        reversal_of=None,
        metadata={},
        principal=_ALICE,
    ),
    legs.RefundLeg(
        transfer_id="cmd-8",
        flow=legs.Flow.TRANSFER,
        from_account_id="alice",
        to_account_id="bob",
        amount=1_234,
        code=ErrorCode.ACCOUNT_LOCKED,
        message="account bob is locked",
        decided_at_ms=AT_MS,
        source_sequence=7,
    ),
    legs.SettleLeg(
        transfer_id="cmd-8",
        flow=legs.Flow.CAPTURE,
        from_account_id="alice",
        to_account_id="bob",
        amount=1_234,
        result=_RESULT,
        source_sequence=7,
    ),
    legs.BatchPrepare(
        batch_id="batch-1",
        leg_index=0,
        account_id="alice",
        amount=-300,
        currency="USD",
        command_id="cmd-9",
        dedup_id="batch-1",
        incarnation=4,
        postings=[-300, -5],  # a payment and its fee
        principal=_ALICE,
    ),
    legs.BatchVote(
        batch_id="batch-1",
        leg_index=1,
        account_id="bob",
        accepted=False,
        code=ErrorCode.LIMIT_EXCEEDED,
        message="above the upper limit",
        incarnation=4,
        sequence=0,
    ),
    legs.BatchDecision(
        batch_id="batch-1",
        leg_index=0,
        account_id="alice",
        commit=False,
        command_id="cmd-9",
        dedup_id="batch-1",
        code=ErrorCode.LIMIT_EXCEEDED,
        incarnation=4,
        sequence=0,
        principal=_ALICE,
    ),
    legs.BatchAck(batch_id="batch-1", leg_index=0, account_id="alice", position=_POSITION, incarnation=4),
    legs.Tick(worker_id="worker-1"),
    Account(
        account_id="alice",
        currency="USD",
        status=AccountStatus.LOCKED,
        lower_limit=-5_000,
        upper_limit=1_000_000,
        balance=12_34,
        held=2_34,
        pending_in=0,
        pending_out=0,
        sequence=7,
        parent_account_id=None,
        metadata={},
        created_at_ms=AT_MS - 1000,
        updated_at_ms=AT_MS,
        last_hash=_PREVIOUS_HASH,
        owner="alice",
    ),
    Hold(
        account_id="alice",
        hold_id="auth-1",
        amount=500,
        currency="USD",
        status=HoldStatus.OPEN,
        expires_at_ms=AT_MS + 600_000,
        command_id="cmd-10",
        created_at_ms=AT_MS,
    ),
    DedupEntry(
        digest=bytes(range(16)),
        command_id="cmd-8",
        command_type="Transfer",
        recorded_at_ms=AT_MS,
        result=None,
        waiters=["cmd-8b"],
        duplicates=["cmd-8b"],
        malformed=False,
        principal_id="alice",
    ),
    CommandIndexEntry(dedup_key="alice|tr-1"),
    OutgoingTransfer(
        transfer_id="cmd-8",
        flow=legs.Flow.TRANSFER,
        from_account_id="alice",
        to_account_id="bob",
        amount=1_234,
        currency="USD",
        command_id="cmd-8",
        dedup_id="tr-1",
        command_type="Transfer",
        dedup_key="alice|tr-1",
        hold_key=None,
        reversal_of=None,
        source_sequence=7,
        principal=_ALICE,
    ),
    TransferRecord(
        transfer_id="cmd-8",
        flow=legs.Flow.TRANSFER,
        from_account_id="alice",
        to_account_id="bob",
        amount=1_234,
        currency="USD",
        credited_at_ms=AT_MS,
        reversed_by=None,
    ),
    PreparedLeg(
        batch_id="batch-1",
        leg_index=0,
        account_id="alice",
        amount=-300,
        status=PreparedStatus.HELD,
        incarnation=4,
        sequence=8,
        command_id="cmd-9",
        dedup_id="batch-1",
        postings=[-300, -5],
    ),
    BatchState(
        batch_id="batch-1",
        command_id="cmd-9",
        dedup_id="batch-1",
        dedup_key="batch-1|batch-1",
        legs=_LEGS,
        phase=BatchPhase.PREPARING,
        voted=[True, False],
        acked=[False, False],
        positions=[],
        code=None,
        message="",
        deadline_ms=AT_MS + 30_000,
        created_at_ms=AT_MS,
        incarnation=4,
        sequences=[8, 0],
        code_leg_index=-1,
        principal=_ALICE,
    ),
    RetentionEntry(
        recorded_at_ms=AT_MS,
        keys=[
            RetainedKey(table=Table.DEDUP, key="alice|tr-1"),
            RetainedKey(table=Table.COMMANDS, key="cmd-1"),
            RetainedKey(table=Table.DEDUP, key="alice|tr-2"),
            RetainedKey(table=Table.COMMANDS, key="cmd-2"),
        ],
        inputs=2,  # two commands of the same millisecond
    ),
    ExpiryEntry(key="alice|auth-1"),
    ShardMeta(clock_ms=AT_MS, retention_head=3, retention_tail=9, batches_started=4, inputs_folded=5),
    CreditMark(sequence=7),
    VelocityState(
        **_VELOCITY_RULES,
        buckets=[
            VelocityBucket(minute=AT_MS // 60_000 - 61, amount=1_234, count=1),
            VelocityBucket(minute=AT_MS // 60_000, amount=2_000, count=2),
        ],
    ),
    DeadLetter(
        source_topic="streamwallet.commands",
        source_partition=3,
        source_offset=42,
        key=b"alice",
        value=b"not avro",
        reason_code="UNDECODABLE",
        reason="not Avro single-object encoding",
        worker_id="worker-1",
        failed_at_ms=AT_MS,
    ),
    DeadLetter(
        source_topic="streamwallet.legs",
        source_partition=5,
        source_offset=7,
        key=b"alice",
        value=None,
        reason_code="UNKNOWN_FLOW",  # a leg refused by its shard (ledger.errors.RefusalCode)
        reason="SettleLeg for transfer cmd-99, which is not in flight here",
        worker_id="worker-1",
        failed_at_ms=AT_MS,
    ),
    AuditEvent(
        principal=_OPERATOR,
        action="LockAccount",
        account_id="alice",
        command_id="cmd-7",
        outcome=AuditOutcome.ALLOWED,
        code="",
        message="",
        source=AuditSource.SHARD,
        occurred_at_ms=AT_MS,
    ),
    AuditEvent(
        principal=_ALICE,
        action="LockAccount",
        account_id="alice",
        command_id="cmd-8",
        outcome=AuditOutcome.DENIED,
        code="FORBIDDEN",
        message="LockAccount needs the role OPERATOR; principal 'alice' has none of them",
        source=AuditSource.SHARD,
        occurred_at_ms=AT_MS,
    ),
]
for _example in EXAMPLES:
    if isinstance(_example, AccountEvent):
        chain(_example, previous_hash=_PREVIOUS_HASH)


def vectors(codec: Codec) -> list[dict[str, Any]]:
    rows = []
    for example in EXAMPLES:
        schema = codec.schema(type(example))
        encoded = codec.encode(example)
        text = io.StringIO()
        json_writer(text, schema.parsed_plain, [codec.to_record(example)])  # Avro JSON; times as plain longs
        rows.append(
            {
                "type": schema.full_name,
                "fingerprint": schema.fingerprint.hex(),
                "avro_json": json.loads(text.getvalue()),
                "single_object_hex": encoded.hex(),
            }
        )
    return rows


def render(codec: Codec) -> str:
    return json.dumps(vectors(codec), indent=1, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    text = render(Codec())
    path = Path(VECTORS_PATH)
    if args.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
        return 0
    if not path.exists() or path.read_text() != text:
        print(f"{path} is out of date: run python -m codec.golden --write", file=sys.stderr)
        return 1
    print(f"{path} is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
