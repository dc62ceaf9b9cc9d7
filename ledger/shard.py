"""The shard state machine: the single writer of the accounts of one partition.

`Shard.handle(message, timestamp_ms=...)` takes one input (a client command, a leg
from another shard, or a tick) and returns an `Outcome`: account events, final
results, and legs for other shards. It reads and writes state only through the
`Store` it was given, never raises for a business error (rejections are results),
and is deterministic: the same inputs in the same order over the same state give
the same outcome, byte for byte. Time is the partition's clock: the largest message
timestamp seen so far, never the wall clock.

Each input is decided by one flow (`ledger/flows/`), chosen by the tables below:
a client command goes through `intake` (routing, dedup, validation) to its flow;
a leg, a query or a tick goes straight to its handler. Where a flow is decided:
- single-account commands, and transfers, captures and batches whose accounts all
  live on this shard: here, in one step;
- a flow whose credit side lives on another shard: debited here (the money shows as
  `pending_out`), credited there (CreditLeg), then settled or refunded here
  (SettleLeg/RefundLeg). The final result comes from the shard that decides it;
- a batch over several shards: two-phase commit with this shard (the batch id's
  partition) as coordinator, participants reserving their legs and voting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

from ledger.accounts import Account
from ledger.audit import AuditEvent
from ledger.commands import (
    AssignOwner,
    Batch,
    CaptureHold,
    CloseAccount,
    Command,
    Deposit,
    LockAccount,
    MutatingCommand,
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
from ledger.decision import Decision
from ledger.errors import InputRefusal, InvariantViolation, RefusalCode
from ledger.events import AccountEvent, CommandResult
from ledger.flows import (
    account_operations,
    batches,
    clock,
    holds,
    intake,
    leg_checks,
    queries,
    reversals,
    settlement,
    transfers,
    velocity_rules,
)
from ledger.flows.intake import payload_digest
from ledger.keys import META_KEY, dedup_key, hold_key
from ledger.legs import BatchAck, BatchDecision, BatchPrepare, BatchVote, CreditLeg, Leg, RefundLeg, SettleLeg, Tick
from ledger.limits import (
    BATCH_TIMEOUT_MS_DEFAULT,
    DEDUP_ENTRIES_MAX_DEFAULT,
    DEDUP_RETENTION_MS_DEFAULT,
    RETENTION_FORGETS_PER_INPUT_MAX,
)
from ledger.principals import ANONYMOUS
from ledger.state import ShardMeta, Store, Table

__all__ = ["META_KEY", "Message", "Outcome", "Shard", "ShardConfig", "dedup_key", "hold_key", "payload_digest"]

Message = Command | Leg | Tick

# A client command: `intake` (routing, dedup, validation), then its flow.
COMMAND_FLOWS: dict[type, intake.CommandFlow] = {
    OpenAccount: account_operations.open_account,
    UpdateLimits: account_operations.update_limits,
    LockAccount: account_operations.lock_account,
    UnlockAccount: account_operations.unlock_account,
    CloseAccount: account_operations.close_account,
    Deposit: account_operations.deposit,
    Withdraw: account_operations.withdraw,
    Transfer: transfers.transfer,
    PlaceHold: holds.place_hold,
    CaptureHold: holds.capture_hold,
    VoidHold: holds.void_hold,
    ReverseTransfer: reversals.reverse_transfer,
    Batch: batches.batch,
    SetVelocityRules: velocity_rules.set_velocity_rules,
    AssignOwner: account_operations.assign_owner,
}

# Everything else: straight to its handler.
HANDLERS: dict[type, Callable[[Decision, Any], None]] = {
    QueryCommand: queries.query,
    CreditLeg: transfers.credit_leg,  # the destination's side of a move
    SettleLeg: settlement.settle_leg,  # back at the source: credited
    RefundLeg: settlement.refund_leg,  # back at the source: refused
    BatchPrepare: batches.batch_prepare,  # participant
    BatchVote: batches.batch_vote,  # coordinator
    BatchDecision: batches.batch_decision,  # participant
    BatchAck: batches.batch_ack,  # coordinator
    Tick: clock.tick,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShardConfig:
    retention_ms: int = DEDUP_RETENTION_MS_DEFAULT  # dedup memory, finalized holds, reversible transfers
    retained_entries_max: int = DEDUP_ENTRIES_MAX_DEFAULT  # then new commands are refused: DEDUP_WINDOW_FULL
    batch_timeout_ms: int = BATCH_TIMEOUT_MS_DEFAULT

    def __post_init__(self) -> None:
        for name in ("retention_ms", "retained_entries_max", "batch_timeout_ms"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"ShardConfig.{name} must be a positive integer, not {value!r}")


@dataclasses.dataclass(slots=True)
class Outcome:
    events: list[AccountEvent] = dataclasses.field(default_factory=list)
    results: list[CommandResult] = dataclasses.field(default_factory=list)
    legs: list[Leg] = dataclasses.field(default_factory=list)
    # The audit trail (ledger/audit.py): every privileged command, and every denied one.
    audit: list[AuditEvent] = dataclasses.field(default_factory=list)
    # A leg that does not fit this shard's state: refused, it changed nothing (but for the
    # clock and the retention window every input moves); the worker dead-letters it. A
    # refusal may still send legs that clean up after a forged or replayed leg (a refund,
    # a batch's presumed abort): they are as safe as their receiver's checks.
    refused: InputRefusal | None = None


class Shard:
    def __init__(self, *, store: Store, config: ShardConfig, is_local: Callable[[str], bool]) -> None:
        self._store = store
        self._config = config
        self._is_local = is_local

    def handle(self, message: Message, *, timestamp_ms: int) -> Outcome:
        meta: ShardMeta | None = self._store.get(Table.META, META_KEY)
        if meta is None:
            meta = ShardMeta(clock_ms=0, retention_head=0, retention_tail=0)
        meta.clock_ms = max(meta.clock_ms, timestamp_ms)
        decision = Decision(
            store=self._store, config=self._config, is_local=self._is_local, meta=meta, outcome=Outcome()
        )
        if not isinstance(message, Tick):  # a tick does all of this within its own budget
            # Time passes before the input is decided: a hold its timestamp made due is
            # released first, by no one (ANONYMOUS), so it reserves nothing for this input
            # (test_time_and_retention.py::test_a_hold_past_its_expiry_reserves_nothing_…).
            # A batch past its deadline is aborted before a vote can commit it
            # (test_time_and_retention.py::test_a_vote_after_the_deadline_finds_the_batch_…).
            clock.time_passes(decision)
            decision.input_began()
            clock.forget_expired(decision, count_max=RETENTION_FORGETS_PER_INPUT_MAX)
        decision.principal = getattr(message, "principal", ANONYMOUS)  # a flow's record may say better
        flow = COMMAND_FLOWS.get(type(message))
        if flow is not None:
            intake.handle_command(decision, cast(MutatingCommand, message), flow=flow)  # its keys are all mutating
        else:
            handler = HANDLERS.get(type(message))
            if handler is None:
                raise InvariantViolation(f"no handler for {type(message).__name__}")
            if not isinstance(message, CROSS_SHARD_LEGS) or _leg_fits(decision, message):
                handler(decision, message)
        decision.finish()
        return decision.outcome

    def account(self, account_id: str) -> Account | None:
        account: Account | None = self._store.get(Table.ACCOUNTS, account_id)
        return account

    def clock_ms(self) -> int:
        meta: ShardMeta | None = self._store.get(Table.META, META_KEY)
        return 0 if meta is None else meta.clock_ms

    def wants_tick(self, now_ms: int) -> bool:
        """Whether a tick stamped `now_ms` would do anything (see `clock.due_ms`): something
        waits for a time the clock or `now_ms` has reached."""
        meta: ShardMeta | None = self._store.get(Table.META, META_KEY)
        due = clock.due_ms(self._store, meta, retention_ms=self._config.retention_ms)
        return due is not None and due <= max(now_ms, 0 if meta is None else meta.clock_ms)


# The legs of the flows across shards (not ticks): checked before their handler.
CROSS_SHARD_LEGS = (CreditLeg, SettleLeg, RefundLeg, BatchPrepare, BatchVote, BatchDecision, BatchAck)


def _leg_fits(decision: Decision, leg: Leg) -> bool:
    """A leg for this shard whose fields a shard could have written; else refused."""
    if not decision.is_local(leg.routing_key):
        elsewhere = f"{type(leg).__name__} for {leg.routing_key!r}, which this partition does not own"
        decision.refuse(RefusalCode.MISROUTED_LEG, elsewhere)
        return False
    problem = leg_checks.problem(leg)
    if problem is not None:
        decision.refuse(RefusalCode.INVALID_LEG, f"{type(leg).__name__}: {problem}")
        return False
    return True
