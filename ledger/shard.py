"""The shard state machine: the single writer of the accounts of one partition.

`Shard.handle(message, timestamp_ms=...)` takes one input (a client command, a leg
from another shard, or a tick) and returns an `Outcome`: account events, final
results, and legs for other shards. It reads and writes state only through the
`Store` it was given, never raises for a business error (rejections are results),
and is deterministic: the same inputs in the same order over the same state give
the same outcome, byte for byte. Time is the partition's clock: the largest message
timestamp seen so far, never the wall clock.

Where each flow is decided:
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
import hashlib
import operator
from collections.abc import Callable
from typing import Any

from ledger.accounts import (
    Account,
    AccountStatus,
    Hold,
    HoldStatus,
    check_usable,
    check_usable_for_credit,
    check_usable_for_debit,
    within_limits,
)
from ledger.commands import (
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
    Transfer,
    UnlockAccount,
    UpdateLimits,
    VoidHold,
    Withdraw,
    check_envelope,
    validate_body,
)
from ledger.errors import ErrorCode, InvariantViolation, Rejection
from ledger.events import AccountEvent, CommandResult, EventKind, Position, ResultStatus, account_event, position
from ledger.legs import (
    BatchAck,
    BatchDecision,
    BatchPrepare,
    BatchVote,
    CreditLeg,
    Flow,
    Leg,
    RefundLeg,
    SettleLeg,
    Tick,
)
from ledger.limits import (
    BATCH_TIMEOUT_MS_DEFAULT,
    DEDUP_ENTRIES_MAX_DEFAULT,
    DEDUP_RETENTION_MS_DEFAULT,
    DEDUP_WAITERS_MAX,
    EXPIRATIONS_PER_TICK_MAX,
)
from ledger.state import (
    BatchPhase,
    BatchState,
    CommandIndexEntry,
    DedupEntry,
    ExpiryEntry,
    OutgoingTransfer,
    PreparedLeg,
    PreparedStatus,
    RetainedKey,
    RetentionEntry,
    ShardMeta,
    Store,
    Table,
    TransferRecord,
)

META_KEY = "shard"
RETENTION_KEY_DIGITS = 20

Message = Command | Leg | Tick

_CREDITED = {
    Flow.TRANSFER: EventKind.TRANSFER_CREDITED,
    Flow.CAPTURE: EventKind.CAPTURE_CREDITED,
    Flow.REVERSAL: EventKind.REVERSAL_CREDITED,
}
_REFUNDED = {
    Flow.TRANSFER: EventKind.TRANSFER_REFUNDED,
    Flow.CAPTURE: EventKind.CAPTURE_REFUNDED,
    Flow.REVERSAL: EventKind.REVERSAL_REFUNDED,
}
_SETTLED = {
    Flow.TRANSFER: EventKind.TRANSFER_SETTLED,
    Flow.CAPTURE: EventKind.CAPTURE_SETTLED,
    Flow.REVERSAL: EventKind.REVERSAL_SETTLED,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShardConfig:
    retention_ms: int = DEDUP_RETENTION_MS_DEFAULT  # dedup memory, finalized holds, reversible transfers
    retained_entries_max: int = DEDUP_ENTRIES_MAX_DEFAULT
    batch_timeout_ms: int = BATCH_TIMEOUT_MS_DEFAULT

    def __post_init__(self) -> None:
        assert self.retention_ms > 0 and self.retained_entries_max > 0 and self.batch_timeout_ms > 0


@dataclasses.dataclass(slots=True)
class Outcome:
    events: list[AccountEvent] = dataclasses.field(default_factory=list)
    results: list[CommandResult] = dataclasses.field(default_factory=list)
    legs: list[Leg] = dataclasses.field(default_factory=list)


def dedup_key(routing_key: str, dedup_id: str) -> str:
    return f"{routing_key}|{dedup_id}"


def hold_key(account_id: str, hold_id: str) -> str:
    return f"{account_id}|{hold_id}"


def _time_key(time_ms: int, key: str) -> str:
    return f"{time_ms:020d}|{key}"


def _time_of(time_key: str) -> int:
    return int(time_key[:20])


def payload_digest(command: MutatingCommand) -> bytes:
    """Fingerprint of everything but the command id: a retry must match it exactly."""
    plan = _DIGEST_PLANS.get(type(command))
    if plan is None:
        plan = _DIGEST_PLANS[type(command)] = _digest_plan(type(command))
    values = list(plan.values(command))
    for index in plan.dicts:
        if isinstance(values[index], dict):
            values[index] = sorted(values[index].items())
    for index in plan.leg_lists:
        if isinstance(values[index], list):
            values[index] = [
                (getattr(leg, "account_id", leg), getattr(leg, "amount", None), getattr(leg, "currency", None))
                for leg in values[index]
            ]
    return hashlib.blake2b(repr((plan.name, values)).encode(), digest_size=16).digest()


@dataclasses.dataclass(frozen=True, slots=True)
class _DigestPlan:
    name: str
    values: Callable[[Any], tuple[Any, ...]]
    dicts: tuple[int, ...]
    leg_lists: tuple[int, ...]


_DIGEST_PLANS: dict[type, _DigestPlan] = {}


def _digest_plan(cls: type) -> _DigestPlan:
    fields = [field for field in dataclasses.fields(cls) if field.name != "command_id"]
    names = [field.name for field in fields]
    getter = operator.attrgetter(*names)
    return _DigestPlan(
        name=cls.__name__,
        values=(lambda command: (getter(command),)) if len(names) == 1 else getter,
        dicts=tuple(index for index, name in enumerate(names) if name == "metadata"),
        leg_lists=tuple(index for index, name in enumerate(names) if name == "legs"),
    )


class Shard:
    def __init__(self, *, store: Store, config: ShardConfig, is_local: Callable[[str], bool]) -> None:
        self._store = store
        self._config = config
        self._is_local = is_local

    # -- entry point --------------------------------------------------------------

    def handle(self, message: Message, *, timestamp_ms: int) -> Outcome:
        meta: ShardMeta | None = self._store.get(Table.META, META_KEY)
        if meta is None:
            meta = ShardMeta(clock_ms=0, retention_head=0, retention_tail=0)
        meta.clock_ms = max(meta.clock_ms, timestamp_ms)
        decision = _Decision(self._store, self._config, self._is_local, meta)
        handler = _HANDLERS.get(type(message))
        assert handler is not None, f"no handler for {type(message).__name__}"
        handler(decision, message)
        decision.finish()
        return decision.outcome

    def account(self, account_id: str) -> Account | None:
        account: Account | None = self._store.get(Table.ACCOUNTS, account_id)
        return account

    def clock_ms(self) -> int:
        meta: ShardMeta | None = self._store.get(Table.META, META_KEY)
        return 0 if meta is None else meta.clock_ms


class _Decision:
    """The working set of one `handle` call: state access, time, and what it emits."""

    __slots__ = ("config", "is_local", "meta", "now", "outcome", "retained", "store")

    def __init__(self, store: Store, config: ShardConfig, is_local: Callable[[str], bool], meta: ShardMeta) -> None:
        self.store = store
        self.config = config
        self.is_local = is_local
        self.meta = meta
        self.now = meta.clock_ms
        self.outcome = Outcome()
        self.retained: list[RetainedKey] = []

    # -- state ----------------------------------------------------------------------

    def account(self, account_id: str) -> Account | None:
        account: Account | None = self.store.get(Table.ACCOUNTS, account_id)
        return account

    def emit(
        self,
        account: Account,
        kind: EventKind,
        *,
        amount: int = 0,
        held_change: int = 0,
        command_id: str,
        dedup_id: str,
        correlation_id: str | None = None,
        counterparty_account_id: str | None = None,
        code: ErrorCode | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Record one change of `account` (already applied to it) as its next event."""
        if not within_limits(account):
            raise InvariantViolation(f"{kind} would leave account {account.account_id} outside its limits")
        account.sequence += 1
        account.updated_at_ms = self.now
        self.store.put(Table.ACCOUNTS, account.account_id, account)
        self.outcome.events.append(
            account_event(
                account,
                kind=kind,
                amount=amount,
                held_change=held_change,
                command_id=command_id,
                dedup_id=dedup_id,
                occurred_at_ms=self.now,
                correlation_id=correlation_id,
                counterparty_account_id=counterparty_account_id,
                code=code,
                metadata=metadata,
            )
        )

    def retain(self, table: Table, key: str) -> None:
        """Keep this record for the retention window, then forget it (FIFO, deterministic)."""
        self.retained.append(RetainedKey(table=table, key=key))

    def finish(self) -> None:
        meta = self.meta
        if self.retained:
            self.store.put(
                Table.RETENTION,
                f"{meta.retention_tail:0{RETENTION_KEY_DIGITS}d}",
                RetentionEntry(recorded_at_ms=self.now, keys=self.retained),
            )
            meta.retention_tail += 1
            # The size bound: evict the oldest entries even if they are still within the window.
            while meta.retention_tail - meta.retention_head > self.config.retained_entries_max:
                if not self.evict_oldest():
                    break
        self.store.put(Table.META, META_KEY, meta)

    def evict_oldest(self) -> bool:
        """Forget the oldest retention entry, unless it holds a command still in flight (its
        waiting duplicates need its result): then the queue waits, past its bounds, for it."""
        meta = self.meta
        key = f"{meta.retention_head:0{RETENTION_KEY_DIGITS}d}"
        entry: RetentionEntry | None = self.store.get(Table.RETENTION, key)
        assert entry is not None, f"retention entry {key} missing"
        for retained in entry.keys:
            if retained.table is Table.DEDUP:
                dedup: DedupEntry | None = self.store.get(Table.DEDUP, retained.key)
                if dedup is not None and dedup.result is None:
                    return False
        for retained in entry.keys:
            self.store.delete(retained.table, retained.key)
        self.store.delete(Table.RETENTION, key)
        meta.retention_head += 1
        return True

    # -- results ----------------------------------------------------------------------

    def result(
        self,
        command: MutatingCommand | QueryCommand,
        *,
        rejection: Rejection | None = None,
        positions: list[Position] | None = None,
        reference_id: str | None = None,
        message: str = "",
        queried: CommandResult | None = None,
    ) -> CommandResult:
        return CommandResult(
            command_id=command.command_id,
            dedup_id=getattr(command, "dedup_id", ""),
            command_type=type(command).__name__,
            status=ResultStatus.ACCEPTED if rejection is None else ResultStatus.REJECTED,
            code=None if rejection is None else rejection.code,
            message=message if rejection is None else rejection.message,
            reference_id=reference_id,
            positions=positions or [],
            replayed=False,
            original_command_id=command.command_id,
            decided_at_ms=self.now,
            queried=queried,
        )

    def finalize(self, key: str, result: CommandResult, *, publish: bool = True) -> None:
        """A flow that was in flight has its final result: publish it (unless another
        shard already did), remember it for duplicates, and answer the duplicates that
        were waiting for it."""
        if publish:
            self.outcome.results.append(result)
        entry: DedupEntry | None = self.store.get(Table.DEDUP, key)
        if entry is None or entry.command_id != result.command_id:
            # Evicted while in flight; nothing to answer (and a newer command that reused the
            # dedup id since then is not answered with this flow's result).
            return
        for waiter in entry.waiters:
            self.outcome.results.append(dataclasses.replace(result, command_id=waiter, replayed=True))
        entry.result = result
        entry.waiters = []
        self.store.put(Table.DEDUP, key, entry)


# -- client commands ----------------------------------------------------------------------


def _check_routing(decision: _Decision, command: Command) -> Rejection | None:
    """Ids well formed, and the command on the shard that owns its routing key: a command
    produced with another key (or another partitioner) must not touch an account here."""
    rejection = check_envelope(command)
    if rejection is None and not decision.is_local(command.routing_key):
        rejection = Rejection(
            ErrorCode.MALFORMED,
            f"the command for {command.routing_key!r} arrived on a partition that does not own it: produce it with "
            "that key and Kafka's default (murmur2) partitioner",
        )
    return rejection


def _handle_command(decision: _Decision, command: MutatingCommand) -> None:
    rejection = _check_routing(decision, command)
    if rejection is not None:  # not remembered: its dedup id or its shard cannot be trusted
        decision.outcome.results.append(decision.result(command, rejection=rejection))
        return
    key = dedup_key(command.routing_key, command.dedup_id)
    digest = payload_digest(command)
    entry: DedupEntry | None = decision.store.get(Table.DEDUP, key)
    if entry is not None:
        _answer_duplicate(decision, command, key, entry, digest)
        return
    indexed: CommandIndexEntry | None = decision.store.get(Table.COMMANDS, command.command_id)
    if indexed is not None:  # not remembered either: the id belongs to the earlier command
        decision.outcome.results.append(
            decision.result(
                command,
                rejection=Rejection(
                    ErrorCode.ID_IN_USE,
                    f"command id {command.command_id} was used by another command (dedup id "
                    f"{indexed.dedup_key.rsplit('|', 1)[-1]!r}) within the retention window",
                ),
            )
        )
        return
    rejection = validate_body(command)
    handler = _COMMAND_HANDLERS[type(command)]
    result = decision.result(command, rejection=rejection) if rejection is not None else handler(decision, command)
    decision.store.put(
        Table.DEDUP,
        key,
        DedupEntry(
            digest=digest,
            command_id=command.command_id,
            command_type=type(command).__name__,
            recorded_at_ms=decision.now,
            result=result,
            waiters=[],
        ),
    )
    decision.store.put(Table.COMMANDS, command.command_id, CommandIndexEntry(dedup_key=key))
    decision.retain(Table.DEDUP, key)
    decision.retain(Table.COMMANDS, command.command_id)
    if result is not None:
        decision.outcome.results.append(result)


def _answer_duplicate(
    decision: _Decision, command: MutatingCommand, key: str, entry: DedupEntry, digest: bytes
) -> None:
    if entry.digest != digest:
        decision.outcome.results.append(
            decision.result(
                command,
                rejection=Rejection(
                    ErrorCode.DEDUP_CONFLICT,
                    f"dedup id {command.dedup_id!r} was used by command {entry.command_id} with another payload",
                ),
            )
        )
    elif entry.result is not None:
        decision.outcome.results.append(dataclasses.replace(entry.result, command_id=command.command_id, replayed=True))
    elif len(entry.waiters) >= DEDUP_WAITERS_MAX:
        decision.outcome.results.append(
            decision.result(
                command,
                rejection=Rejection(
                    ErrorCode.DUPLICATE_BACKLOG,
                    f"{DEDUP_WAITERS_MAX} duplicates already wait for command {entry.command_id}",
                ),
            )
        )
    else:
        entry.waiters.append(command.command_id)
        decision.store.put(Table.DEDUP, key, entry)


def _not_found(account_id: str) -> Rejection:
    return Rejection(ErrorCode.ACCOUNT_NOT_FOUND, f"account {account_id} does not exist")


def _open_account(decision: _Decision, command: OpenAccount) -> CommandResult:
    if decision.account(command.account_id) is not None:
        return decision.result(
            command, rejection=Rejection(ErrorCode.ACCOUNT_EXISTS, f"account {command.account_id} already exists")
        )
    account = Account(
        account_id=command.account_id,
        currency=command.currency,
        status=AccountStatus.ACTIVE,
        lower_limit=command.lower_limit,
        upper_limit=command.upper_limit,
        balance=0,
        held=0,
        pending_in=0,
        pending_out=0,
        sequence=0,
        parent_account_id=command.parent_account_id,
        metadata=dict(command.metadata),
        created_at_ms=decision.now,
        updated_at_ms=decision.now,
    )
    decision.emit(
        account, EventKind.OPENED, command_id=command.command_id, dedup_id=command.dedup_id, metadata=command.metadata
    )
    return decision.result(command, positions=[position(account)], reference_id=command.account_id)


def _update_limits(decision: _Decision, command: UpdateLimits) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=_not_found(command.account_id))
    if account.status is AccountStatus.CLOSED:
        return decision.result(command, rejection=check_usable(account))
    if command.lower_limit > account.balance - account.held:
        return decision.result(
            command,
            rejection=Rejection(
                ErrorCode.INVALID_LIMITS,
                f"lower limit {command.lower_limit} is above the account's available balance "
                f"{account.balance - account.held}",
            ),
        )
    if command.upper_limit < account.balance + account.pending_in + account.pending_out:
        return decision.result(
            command,
            rejection=Rejection(
                ErrorCode.INVALID_LIMITS,
                f"upper limit {command.upper_limit} is below what the account holds or may receive "
                f"({account.balance + account.pending_in + account.pending_out})",
            ),
        )
    account.lower_limit = command.lower_limit
    account.upper_limit = command.upper_limit
    decision.emit(account, EventKind.LIMITS_UPDATED, command_id=command.command_id, dedup_id=command.dedup_id)
    return decision.result(command, positions=[position(account)])


def _lock_account(decision: _Decision, command: LockAccount) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=_not_found(command.account_id))
    rejection = check_usable(account)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    account.status = AccountStatus.LOCKED
    decision.emit(account, EventKind.LOCKED, command_id=command.command_id, dedup_id=command.dedup_id)
    return decision.result(command, positions=[position(account)])


def _unlock_account(decision: _Decision, command: UnlockAccount) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=_not_found(command.account_id))
    if account.status is not AccountStatus.LOCKED:
        rejection = check_usable(account) or Rejection(
            ErrorCode.ACCOUNT_NOT_LOCKED, f"account {command.account_id} is not locked"
        )
        return decision.result(command, rejection=rejection)
    account.status = AccountStatus.ACTIVE
    decision.emit(account, EventKind.UNLOCKED, command_id=command.command_id, dedup_id=command.dedup_id)
    return decision.result(command, positions=[position(account)])


def _close_account(decision: _Decision, command: CloseAccount) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=_not_found(command.account_id))
    if account.status is AccountStatus.CLOSED:
        return decision.result(command, rejection=check_usable(account))
    if account.balance or account.held or account.pending_in or account.pending_out:
        return decision.result(
            command,
            rejection=Rejection(
                ErrorCode.BALANCE_NOT_ZERO,
                f"account {command.account_id} has balance {account.balance}, held {account.held}, "
                f"pending in {account.pending_in}, pending out {account.pending_out}; all must be zero",
            ),
        )
    account.status = AccountStatus.CLOSED
    decision.emit(account, EventKind.CLOSED, command_id=command.command_id, dedup_id=command.dedup_id)
    return decision.result(command, positions=[position(account)])


def _deposit(decision: _Decision, command: Deposit) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=_not_found(command.account_id))
    rejection = check_usable_for_credit(account, command.currency, command.amount)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    account.balance += command.amount
    decision.emit(
        account,
        EventKind.DEPOSITED,
        amount=command.amount,
        command_id=command.command_id,
        dedup_id=command.dedup_id,
        metadata=command.metadata,
    )
    return decision.result(command, positions=[position(account)])


def _withdraw(decision: _Decision, command: Withdraw) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=_not_found(command.account_id))
    rejection = check_usable_for_debit(account, command.currency, command.amount)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    account.balance -= command.amount
    decision.emit(
        account,
        EventKind.WITHDRAWN,
        amount=-command.amount,
        command_id=command.command_id,
        dedup_id=command.dedup_id,
        metadata=command.metadata,
    )
    return decision.result(command, positions=[position(account)])


# -- flows that move money between two accounts -----------------------------------------


@dataclasses.dataclass(slots=True, kw_only=True)
class _Move:
    """A debit of `source` and a credit of `to_account_id`, by one command."""

    flow: Flow
    command: MutatingCommand
    transfer_id: str
    to_account_id: str
    amount: int
    currency: str
    debit_kind: EventKind
    held_change: int  # change of the source's `held` when it is debited
    hold_key: str | None = None
    reversal_of: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


def _move(decision: _Decision, source: Account, move: _Move) -> CommandResult | None:
    """Debit `source` and credit the destination: at once when it lives here (rejecting
    the whole command if it cannot be credited), else through a CreditLeg."""
    command = move.command
    if decision.is_local(move.to_account_id):
        destination = decision.account(move.to_account_id)
        rejection = (
            _not_found(move.to_account_id)
            if destination is None
            else check_usable_for_credit(destination, move.currency, move.amount)
        ) or _check_transfer_id_free(decision, move.transfer_id)
        if rejection is not None:
            return decision.result(command, rejection=rejection)
        assert destination is not None
        _debit_source(decision, source, move, in_flight=False)
        destination.balance += move.amount
        decision.emit(
            destination,
            _CREDITED[move.flow],
            amount=move.amount,
            command_id=command.command_id,
            dedup_id=command.dedup_id,
            correlation_id=move.transfer_id,
            counterparty_account_id=source.account_id,
            metadata=move.metadata,
        )
        if move.flow is Flow.TRANSFER:
            _record_credited_transfer(
                decision,
                transfer_id=move.transfer_id,
                flow=move.flow,
                from_account_id=source.account_id,
                destination=destination,
                amount=move.amount,
            )
        return decision.result(
            command, positions=[position(source), position(destination)], reference_id=move.transfer_id
        )
    _debit_source(decision, source, move, in_flight=True)
    decision.store.put(
        Table.OUTGOING,
        move.transfer_id,
        OutgoingTransfer(
            transfer_id=move.transfer_id,
            flow=move.flow,
            from_account_id=source.account_id,
            to_account_id=move.to_account_id,
            amount=move.amount,
            currency=move.currency,
            command_id=command.command_id,
            dedup_id=command.dedup_id,
            command_type=type(command).__name__,
            dedup_key=dedup_key(command.routing_key, command.dedup_id),
            hold_key=move.hold_key,
            reversal_of=move.reversal_of,
        ),
    )
    decision.outcome.legs.append(
        CreditLeg(
            transfer_id=move.transfer_id,
            flow=move.flow,
            from_account_id=source.account_id,
            to_account_id=move.to_account_id,
            amount=move.amount,
            currency=move.currency,
            command_id=command.command_id,
            dedup_id=command.dedup_id,
            command_type=type(command).__name__,
            source_position=position(source),
            reversal_of=move.reversal_of,
            metadata=dict(move.metadata),
        )
    )
    return None


def _debit_source(decision: _Decision, source: Account, move: _Move, *, in_flight: bool) -> None:
    """The source's side of a move; in flight, the money shows as pending_out until settled."""
    source.balance -= move.amount
    source.held += move.held_change
    if in_flight:
        source.pending_out += move.amount
    decision.emit(
        source,
        move.debit_kind,
        amount=-move.amount,
        held_change=move.held_change,
        command_id=move.command.command_id,
        dedup_id=move.command.dedup_id,
        correlation_id=move.transfer_id,
        counterparty_account_id=move.to_account_id,
        metadata=move.metadata,
    )


def _record_credited_transfer(
    decision: _Decision, *, transfer_id: str, flow: Flow, from_account_id: str, destination: Account, amount: int
) -> None:
    if decision.store.get(Table.TRANSFERS, transfer_id) is not None:
        raise InvariantViolation(f"transfer {transfer_id} credited twice")
    decision.store.put(
        Table.TRANSFERS,
        transfer_id,
        TransferRecord(
            transfer_id=transfer_id,
            flow=flow,
            from_account_id=from_account_id,
            to_account_id=destination.account_id,
            amount=amount,
            currency=destination.currency,
            credited_at_ms=decision.now,
            reversed_by=None,
        ),
    )
    decision.retain(Table.TRANSFERS, transfer_id)


def _transfer(decision: _Decision, command: Transfer) -> CommandResult | None:
    source = decision.account(command.from_account_id)
    if source is None:
        return decision.result(command, rejection=_not_found(command.from_account_id))
    rejection = check_usable_for_debit(source, command.currency, command.amount)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    return _move(
        decision,
        source,
        _Move(
            flow=Flow.TRANSFER,
            command=command,
            transfer_id=command.command_id,
            to_account_id=command.to_account_id,
            amount=command.amount,
            currency=command.currency,
            debit_kind=EventKind.TRANSFER_DEBITED,
            held_change=0,
            metadata=command.metadata,
        ),
    )


def _reverse_transfer(decision: _Decision, command: ReverseTransfer) -> CommandResult | None:
    # Precedence of ErrorCode: the account's existence, then the transfer's, then the
    # account's status, then the transfer's state, then funds.
    source = decision.account(command.account_id)
    if source is None:
        return decision.result(command, rejection=_not_found(command.account_id))
    record: TransferRecord | None = decision.store.get(Table.TRANSFERS, command.transfer_id)
    if record is None or record.flow is not Flow.TRANSFER or record.to_account_id != command.account_id:
        return decision.result(
            command,
            rejection=Rejection(
                ErrorCode.TRANSFER_NOT_FOUND,
                f"no transfer {command.transfer_id} into account {command.account_id} within the retention window",
            ),
        )
    rejection = check_usable(source)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    if record.reversed_by is not None:
        return decision.result(
            command,
            rejection=Rejection(
                ErrorCode.ALREADY_REVERSED, f"transfer {command.transfer_id} was reversed by {record.reversed_by}"
            ),
        )
    rejection = check_usable_for_debit(source, record.currency, record.amount)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    result = _move(
        decision,
        source,
        _Move(
            flow=Flow.REVERSAL,
            command=command,
            transfer_id=command.command_id,
            to_account_id=record.from_account_id,
            amount=record.amount,
            currency=record.currency,
            debit_kind=EventKind.REVERSAL_DEBITED,
            held_change=0,
            reversal_of=record.transfer_id,
            metadata={"reason": command.reason} if command.reason else {},
        ),
    )
    if result is None or result.status is ResultStatus.ACCEPTED:
        # Marked while in flight too, so that a second reversal is refused at once; a
        # refund clears it again.
        record.reversed_by = command.command_id
        decision.store.put(Table.TRANSFERS, record.transfer_id, record)
    return result


def _check_transfer_id_free(decision: _Decision, transfer_id: str) -> Rejection | None:
    """A flow's id is its command's id, chosen by a client: one coming from another source
    shard may clash with a transfer credited here. Refuse it (the money goes back) rather
    than take the clash for a leg delivered twice."""
    if decision.store.get(Table.TRANSFERS, transfer_id) is not None:
        return Rejection(ErrorCode.ID_IN_USE, f"transfer id {transfer_id} was already credited here")
    return None


def _credit_leg(decision: _Decision, leg: CreditLeg) -> None:
    destination = decision.account(leg.to_account_id)
    rejection = (
        _not_found(leg.to_account_id)
        if destination is None
        else check_usable_for_credit(destination, leg.currency, leg.amount)
    ) or _check_transfer_id_free(decision, leg.transfer_id)
    if rejection is not None:
        decision.outcome.legs.append(
            RefundLeg(
                transfer_id=leg.transfer_id,
                flow=leg.flow,
                from_account_id=leg.from_account_id,
                to_account_id=leg.to_account_id,
                amount=leg.amount,
                code=rejection.code,
                message=rejection.message,
                decided_at_ms=decision.now,
            )
        )
        return
    assert destination is not None
    destination.balance += leg.amount
    decision.emit(
        destination,
        _CREDITED[leg.flow],
        amount=leg.amount,
        command_id=leg.command_id,
        dedup_id=leg.dedup_id,
        correlation_id=leg.transfer_id,
        counterparty_account_id=leg.from_account_id,
        metadata=leg.metadata,
    )
    # Every credited leg is recorded: it is what a reversal refers to, and it turns a
    # leg delivered twice into a loud InvariantViolation instead of a double credit.
    _record_credited_transfer(
        decision,
        transfer_id=leg.transfer_id,
        flow=leg.flow,
        from_account_id=leg.from_account_id,
        destination=destination,
        amount=leg.amount,
    )
    result = CommandResult(
        command_id=leg.command_id,
        dedup_id=leg.dedup_id,
        command_type=leg.command_type,
        status=ResultStatus.ACCEPTED,
        code=None,
        message="",
        reference_id=leg.transfer_id,
        positions=[leg.source_position, position(destination)],
        replayed=False,
        original_command_id=leg.command_id,
        decided_at_ms=decision.now,
        queried=None,
    )
    decision.outcome.results.append(result)
    decision.outcome.legs.append(
        SettleLeg(
            transfer_id=leg.transfer_id,
            flow=leg.flow,
            from_account_id=leg.from_account_id,
            to_account_id=leg.to_account_id,
            amount=leg.amount,
            result=result,
        )
    )


def _outgoing(decision: _Decision, transfer_id: str, leg_name: str) -> tuple[OutgoingTransfer, Account]:
    outgoing: OutgoingTransfer | None = decision.store.get(Table.OUTGOING, transfer_id)
    if outgoing is None:
        raise InvariantViolation(f"{leg_name} for transfer {transfer_id}, which is not in flight here")
    source = decision.account(outgoing.from_account_id)
    assert source is not None, f"account {outgoing.from_account_id} vanished with a transfer in flight"
    decision.store.delete(Table.OUTGOING, transfer_id)
    return outgoing, source


def _refund_leg(decision: _Decision, leg: RefundLeg) -> None:
    outgoing, source = _outgoing(decision, leg.transfer_id, "refund")
    source.balance += outgoing.amount
    source.pending_out -= outgoing.amount
    held_change = 0
    if outgoing.flow is Flow.CAPTURE:
        held_change = _reopen_hold(decision, source, outgoing)
    elif outgoing.flow is Flow.REVERSAL:
        assert outgoing.reversal_of is not None
        record: TransferRecord | None = decision.store.get(Table.TRANSFERS, outgoing.reversal_of)
        if record is not None:  # may have left the retention window meanwhile
            record.reversed_by = None
            decision.store.put(Table.TRANSFERS, record.transfer_id, record)
    decision.emit(
        source,
        _REFUNDED[outgoing.flow],
        amount=outgoing.amount,
        held_change=held_change,
        command_id=outgoing.command_id,
        dedup_id=outgoing.dedup_id,
        correlation_id=leg.transfer_id,
        counterparty_account_id=outgoing.to_account_id,
        code=leg.code,
    )
    decision.finalize(
        outgoing.dedup_key,
        CommandResult(
            command_id=outgoing.command_id,
            dedup_id=outgoing.dedup_id,
            command_type=outgoing.command_type,
            status=ResultStatus.REJECTED,
            code=leg.code,
            message=leg.message,
            reference_id=leg.transfer_id,
            positions=[position(source)],
            replayed=False,
            original_command_id=outgoing.command_id,
            decided_at_ms=decision.now,
            queried=None,
        ),
    )


def _settle_leg(decision: _Decision, leg: SettleLeg) -> None:
    outgoing, source = _outgoing(decision, leg.transfer_id, "settle")
    source.pending_out -= outgoing.amount
    held_change = 0
    if outgoing.flow is Flow.CAPTURE:
        assert outgoing.hold_key is not None
        hold: Hold | None = decision.store.get(Table.HOLDS, outgoing.hold_key)
        assert hold is not None and hold.status is HoldStatus.CAPTURING
        remainder = hold.amount - outgoing.amount
        source.held -= remainder
        held_change = -remainder
        _finish_hold(decision, hold, HoldStatus.CAPTURED)
    decision.emit(
        source,
        _SETTLED[outgoing.flow],
        held_change=held_change,
        command_id=outgoing.command_id,
        dedup_id=outgoing.dedup_id,
        correlation_id=leg.transfer_id,
        counterparty_account_id=outgoing.to_account_id,
    )
    # The destination already published this result; only the waiters' copies are new.
    decision.finalize(outgoing.dedup_key, leg.result, publish=False)


# -- holds -----------------------------------------------------------------------------------


def _place_hold(decision: _Decision, command: PlaceHold) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=_not_found(command.account_id))
    key = hold_key(command.account_id, command.hold_id)
    if decision.store.get(Table.HOLDS, key) is not None:
        return decision.result(
            command, rejection=Rejection(ErrorCode.HOLD_EXISTS, f"hold {command.hold_id} already exists")
        )
    rejection = check_usable_for_debit(account, command.currency, command.amount)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    hold = Hold(
        account_id=command.account_id,
        hold_id=command.hold_id,
        amount=command.amount,
        currency=command.currency,
        status=HoldStatus.OPEN,
        expires_at_ms=decision.now + command.ttl_ms,
        command_id=command.command_id,
        created_at_ms=decision.now,
    )
    decision.store.put(Table.HOLDS, key, hold)
    decision.store.put(Table.HOLD_EXPIRIES, _time_key(hold.expires_at_ms, key), ExpiryEntry(key=key))
    account.held += command.amount
    decision.emit(
        account,
        EventKind.HOLD_PLACED,
        held_change=command.amount,
        command_id=command.command_id,
        dedup_id=command.dedup_id,
        correlation_id=command.hold_id,
    )
    return decision.result(command, positions=[position(account)], reference_id=command.hold_id)


def _check_hold_open(decision: _Decision, hold: Hold | None, hold_id: str) -> Rejection | None:
    if hold is None:
        return Rejection(ErrorCode.HOLD_NOT_FOUND, f"no hold {hold_id} on this account")
    if hold.status is HoldStatus.EXPIRED or (hold.status is HoldStatus.OPEN and decision.now >= hold.expires_at_ms):
        return Rejection(ErrorCode.HOLD_EXPIRED, f"hold {hold_id} expired at {hold.expires_at_ms}")
    if hold.status is not HoldStatus.OPEN:
        return Rejection(ErrorCode.HOLD_ALREADY_FINALIZED, f"hold {hold_id} is {hold.status.value.lower()}")
    return None


def _finish_hold(decision: _Decision, hold: Hold, status: HoldStatus) -> None:
    key = hold_key(hold.account_id, hold.hold_id)
    hold.status = status
    decision.store.put(Table.HOLDS, key, hold)
    decision.store.delete(Table.HOLD_EXPIRIES, _time_key(hold.expires_at_ms, key))
    decision.retain(Table.HOLDS, key)


def _void_hold(decision: _Decision, command: VoidHold) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=_not_found(command.account_id))
    hold: Hold | None = decision.store.get(Table.HOLDS, hold_key(command.account_id, command.hold_id))
    rejection = _check_hold_open(decision, hold, command.hold_id)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    assert hold is not None
    account.held -= hold.amount
    _finish_hold(decision, hold, HoldStatus.VOIDED)
    decision.emit(
        account,
        EventKind.HOLD_VOIDED,
        held_change=-hold.amount,
        command_id=command.command_id,
        dedup_id=command.dedup_id,
        correlation_id=command.hold_id,
    )
    return decision.result(command, positions=[position(account)], reference_id=command.hold_id)


def _capture_hold(decision: _Decision, command: CaptureHold) -> CommandResult | None:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=_not_found(command.account_id))
    key = hold_key(command.account_id, command.hold_id)
    hold: Hold | None = decision.store.get(Table.HOLDS, key)
    rejection = (
        (Rejection(ErrorCode.HOLD_NOT_FOUND, f"no hold {command.hold_id} on this account") if hold is None else None)
        or check_usable(account)
        or _check_hold_open(decision, hold, command.hold_id)
    )
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    assert hold is not None
    if command.amount > hold.amount:
        return decision.result(
            command,
            rejection=Rejection(
                ErrorCode.CAPTURE_EXCEEDS_HOLD, f"capture of {command.amount} exceeds hold of {hold.amount}"
            ),
        )
    local = decision.is_local(command.to_account_id)
    # Here the whole hold is released at once; in flight only the captured part is, so
    # that a refund can restore the hold exactly (see _reopen_hold).
    held_change = -hold.amount if local else -command.amount
    result = _move(
        decision,
        account,
        _Move(
            flow=Flow.CAPTURE,
            command=command,
            transfer_id=command.command_id,
            to_account_id=command.to_account_id,
            amount=command.amount,
            currency=hold.currency,
            debit_kind=EventKind.HOLD_CAPTURED,
            held_change=held_change,
            hold_key=key,
        ),
    )
    if result is None:
        hold.status = HoldStatus.CAPTURING
        decision.store.put(Table.HOLDS, key, hold)
    elif result.status is ResultStatus.ACCEPTED:
        _finish_hold(decision, hold, HoldStatus.CAPTURED)
    return result


def _reopen_hold(decision: _Decision, source: Account, outgoing: OutgoingTransfer) -> int:
    """A refused capture: the hold is open again, or expired if its time has passed.
    Returns the change of `held`."""
    assert outgoing.hold_key is not None
    hold: Hold | None = decision.store.get(Table.HOLDS, outgoing.hold_key)
    assert hold is not None and hold.status is HoldStatus.CAPTURING
    if decision.now < hold.expires_at_ms:
        source.held += outgoing.amount
        hold.status = HoldStatus.OPEN
        decision.store.put(Table.HOLDS, outgoing.hold_key, hold)
        return outgoing.amount
    remainder = hold.amount - outgoing.amount
    source.held -= remainder
    _finish_hold(decision, hold, HoldStatus.EXPIRED)
    return -remainder


# -- batches ---------------------------------------------------------------------------------


def _batch(decision: _Decision, command: Batch) -> CommandResult | None:
    if decision.store.get(Table.BATCHES, command.batch_id) is not None:
        return decision.result(
            command,
            rejection=Rejection(ErrorCode.ID_IN_USE, f"batch {command.batch_id} is still in progress"),
            reference_id=command.batch_id,
        )
    if all(decision.is_local(leg.account_id) for leg in command.legs):
        return _local_batch(decision, command)
    decision.store.put(
        Table.BATCHES,
        command.batch_id,
        BatchState(
            batch_id=command.batch_id,
            command_id=command.command_id,
            dedup_id=command.dedup_id,
            dedup_key=dedup_key(command.routing_key, command.dedup_id),
            legs=list(command.legs),
            phase=BatchPhase.PREPARING,
            voted=[False] * len(command.legs),
            acked=[False] * len(command.legs),
            positions=[],
            code=None,
            message="",
            deadline_ms=decision.now + decision.config.batch_timeout_ms,
            created_at_ms=decision.now,
        ),
    )
    decision.store.put(
        Table.BATCH_DEADLINES,
        _time_key(decision.now + decision.config.batch_timeout_ms, command.batch_id),
        ExpiryEntry(key=command.batch_id),
    )
    for index, leg in enumerate(command.legs):
        decision.outcome.legs.append(
            BatchPrepare(
                batch_id=command.batch_id,
                leg_index=index,
                account_id=leg.account_id,
                amount=leg.amount,
                currency=leg.currency,
                command_id=command.command_id,
                dedup_id=command.dedup_id,
            )
        )
    return None


def _check_batch_leg(account: Account | None, account_id: str, amount: int, currency: str) -> Rejection | None:
    if account is None:
        return _not_found(account_id)
    if amount < 0:
        return check_usable_for_debit(account, currency, -amount)
    return check_usable_for_credit(account, currency, amount)


def _local_batch(decision: _Decision, command: Batch) -> CommandResult:
    accounts = [decision.account(leg.account_id) for leg in command.legs]
    for leg, account in zip(command.legs, accounts, strict=True):
        rejection = _check_batch_leg(account, leg.account_id, leg.amount, leg.currency)
        if rejection is not None:
            return decision.result(command, rejection=rejection, reference_id=command.batch_id)
    positions = []
    for leg, account in zip(command.legs, accounts, strict=True):
        assert account is not None
        account.balance += leg.amount
        decision.emit(
            account,
            EventKind.BATCH_COMMITTED,
            amount=leg.amount,
            command_id=command.command_id,
            dedup_id=command.dedup_id,
            correlation_id=command.batch_id,
            metadata=command.metadata,
        )
        positions.append(position(account))
    return decision.result(command, positions=positions, reference_id=command.batch_id)


def _prepared_key(batch_id: str, account_id: str) -> str:
    return f"{batch_id}|{account_id}"


def _batch_prepare(decision: _Decision, leg: BatchPrepare) -> None:
    key = _prepared_key(leg.batch_id, leg.account_id)
    if decision.store.get(Table.PREPARED, key) is not None:
        raise InvariantViolation(f"batch {leg.batch_id} prepared twice on {leg.account_id}")
    account = decision.account(leg.account_id)
    rejection = _check_batch_leg(account, leg.account_id, leg.amount, leg.currency)
    if rejection is None:
        assert account is not None
        if leg.amount < 0:
            account.held -= leg.amount
            status = PreparedStatus.HELD
        else:
            account.pending_in += leg.amount
            status = PreparedStatus.RESERVED
        decision.store.put(
            Table.PREPARED,
            key,
            PreparedLeg(
                batch_id=leg.batch_id,
                leg_index=leg.leg_index,
                account_id=leg.account_id,
                amount=leg.amount,
                status=status,
            ),
        )
        decision.emit(
            account,
            EventKind.BATCH_PREPARED,
            held_change=-leg.amount if leg.amount < 0 else 0,
            command_id=leg.command_id,
            dedup_id=leg.dedup_id,
            correlation_id=leg.batch_id,
        )
    decision.outcome.legs.append(
        BatchVote(
            batch_id=leg.batch_id,
            leg_index=leg.leg_index,
            account_id=leg.account_id,
            accepted=rejection is None,
            code=None if rejection is None else rejection.code,
            message="" if rejection is None else rejection.message,
        )
    )


def _coordinated_batch(decision: _Decision, batch_id: str, leg_name: str) -> BatchState:
    batch: BatchState | None = decision.store.get(Table.BATCHES, batch_id)
    if batch is None:
        raise InvariantViolation(f"{leg_name} for batch {batch_id}, which is not coordinated here")
    return batch


def _decide_batch(decision: _Decision, batch: BatchState, *, commit: bool) -> None:
    decision.store.delete(Table.BATCH_DEADLINES, _time_key(batch.deadline_ms, batch.batch_id))
    batch.phase = BatchPhase.COMMITTING if commit else BatchPhase.ABORTING
    for index, leg in enumerate(batch.legs):
        decision.outcome.legs.append(
            BatchDecision(
                batch_id=batch.batch_id,
                leg_index=index,
                account_id=leg.account_id,
                commit=commit,
                command_id=batch.command_id,
                dedup_id=batch.dedup_id,
                code=batch.code,
            )
        )


def _batch_vote(decision: _Decision, vote: BatchVote) -> None:
    batch = _coordinated_batch(decision, vote.batch_id, "vote")
    if batch.voted[vote.leg_index]:
        raise InvariantViolation(f"leg {vote.leg_index} of batch {vote.batch_id} voted twice")
    batch.voted[vote.leg_index] = True
    if batch.phase is BatchPhase.PREPARING:
        if not vote.accepted:
            batch.code = vote.code
            batch.message = f"leg {vote.leg_index} ({vote.account_id}): {vote.message}"
            _decide_batch(decision, batch, commit=False)
        elif all(batch.voted):
            _decide_batch(decision, batch, commit=True)
    decision.store.put(Table.BATCHES, batch.batch_id, batch)


def _batch_decision(decision: _Decision, leg: BatchDecision) -> None:
    key = _prepared_key(leg.batch_id, leg.account_id)
    prepared: PreparedLeg | None = decision.store.get(Table.PREPARED, key)
    account = decision.account(leg.account_id)
    if prepared is not None:  # None: this leg voted no, so there is nothing to apply or release
        assert account is not None
        decision.store.delete(Table.PREPARED, key)
        debit = prepared.status is PreparedStatus.HELD
        if debit:
            account.held += prepared.amount  # amount < 0 for a debit leg
        else:
            account.pending_in -= prepared.amount
        if leg.commit:
            account.balance += prepared.amount
        decision.emit(
            account,
            EventKind.BATCH_COMMITTED if leg.commit else EventKind.BATCH_RELEASED,
            amount=prepared.amount if leg.commit else 0,
            held_change=prepared.amount if debit else 0,
            command_id=leg.command_id,
            dedup_id=leg.dedup_id,
            correlation_id=leg.batch_id,
            code=None if leg.commit else leg.code,
        )
    decision.outcome.legs.append(
        BatchAck(
            batch_id=leg.batch_id,
            leg_index=leg.leg_index,
            account_id=leg.account_id,
            position=position(account) if account is not None and prepared is not None else None,
        )
    )


def _batch_ack(decision: _Decision, ack: BatchAck) -> None:
    batch = _coordinated_batch(decision, ack.batch_id, "ack")
    if batch.acked[ack.leg_index]:
        raise InvariantViolation(f"leg {ack.leg_index} of batch {ack.batch_id} acknowledged twice")
    batch.acked[ack.leg_index] = True
    if ack.position is not None:
        batch.positions.append(ack.position)
    if not all(batch.acked):
        decision.store.put(Table.BATCHES, batch.batch_id, batch)
        return
    decision.store.delete(Table.BATCHES, batch.batch_id)
    committed = batch.phase is BatchPhase.COMMITTING
    order = {leg.account_id: index for index, leg in enumerate(batch.legs)}
    decision.finalize(
        batch.dedup_key,
        CommandResult(
            command_id=batch.command_id,
            dedup_id=batch.dedup_id,
            command_type=Batch.__name__,
            status=ResultStatus.ACCEPTED if committed else ResultStatus.REJECTED,
            code=None if committed else batch.code,
            message="" if committed else batch.message,
            reference_id=batch.batch_id,
            positions=sorted(batch.positions, key=lambda p: order[p.account_id]) if committed else [],
            replayed=False,
            original_command_id=batch.command_id,
            decided_at_ms=decision.now,
            queried=None,
        ),
    )


# -- time ------------------------------------------------------------------------------------


def _tick(decision: _Decision, _tick_message: Tick) -> None:
    """Everything that happens because time passed, each bounded per tick."""
    budget = EXPIRATIONS_PER_TICK_MAX
    store = decision.store
    while budget and (due := store.first(Table.HOLD_EXPIRIES)) is not None and _time_of(due[0]) <= decision.now:
        budget -= 1
        store.delete(Table.HOLD_EXPIRIES, due[0])
        key = due[1].key
        hold: Hold | None = store.get(Table.HOLDS, key)
        if hold is None or hold.status is not HoldStatus.OPEN:
            continue  # CAPTURING holds end with their settle or refund
        account = decision.account(hold.account_id)
        assert account is not None
        account.held -= hold.amount
        _finish_hold(decision, hold, HoldStatus.EXPIRED)
        decision.emit(
            account,
            EventKind.HOLD_EXPIRED,
            held_change=-hold.amount,
            command_id=hold.command_id,
            dedup_id="",
            correlation_id=hold.hold_id,
            code=ErrorCode.HOLD_EXPIRED,
        )
    while budget and (due := store.first(Table.BATCH_DEADLINES)) is not None and _time_of(due[0]) <= decision.now:
        budget -= 1
        store.delete(Table.BATCH_DEADLINES, due[0])
        batch: BatchState | None = store.get(Table.BATCHES, due[1].key)
        if batch is not None and batch.phase is BatchPhase.PREPARING:
            batch.code = ErrorCode.BATCH_TIMEOUT
            batch.message = f"not every participant voted within {decision.config.batch_timeout_ms} ms"
            _decide_batch(decision, batch, commit=False)
            store.put(Table.BATCHES, batch.batch_id, batch)
    meta = decision.meta
    while budget and meta.retention_head < meta.retention_tail:
        entry: RetentionEntry | None = store.get(Table.RETENTION, f"{meta.retention_head:0{RETENTION_KEY_DIGITS}d}")
        assert entry is not None
        if entry.recorded_at_ms + decision.config.retention_ms > decision.now:
            break
        budget -= 1
        if not decision.evict_oldest():
            break


# -- queries -----------------------------------------------------------------------------------


def _query(decision: _Decision, command: QueryCommand) -> None:
    rejection = _check_routing(decision, command) or validate_body(command)
    if rejection is not None:
        decision.outcome.results.append(decision.result(command, rejection=rejection))
        return
    index: CommandIndexEntry | None = decision.store.get(Table.COMMANDS, command.target_command_id)
    # Only through the routing key the command was sent with: another account of this
    # shard must neither see it nor get another answer than another partitioning gives.
    if index is not None and not index.dedup_key.startswith(f"{command.account_id}|"):
        index = None
    entry: DedupEntry | None = None if index is None else decision.store.get(Table.DEDUP, index.dedup_key)
    if entry is None or entry.command_id != command.target_command_id:
        decision.outcome.results.append(
            decision.result(
                command,
                rejection=Rejection(
                    ErrorCode.COMMAND_NOT_FOUND,
                    f"no command {command.target_command_id} for {command.account_id} within the retention window",
                ),
            )
        )
        return
    decision.outcome.results.append(
        decision.result(
            command,
            reference_id=command.target_command_id,
            message="found" if entry.result is not None else "in flight",
            queried=entry.result,
        )
    )


_COMMAND_HANDLERS: dict[type, Callable[[_Decision, Any], CommandResult | None]] = {
    OpenAccount: _open_account,
    UpdateLimits: _update_limits,
    LockAccount: _lock_account,
    UnlockAccount: _unlock_account,
    CloseAccount: _close_account,
    Deposit: _deposit,
    Withdraw: _withdraw,
    Transfer: _transfer,
    Batch: _batch,
    PlaceHold: _place_hold,
    CaptureHold: _capture_hold,
    VoidHold: _void_hold,
    ReverseTransfer: _reverse_transfer,
}

_HANDLERS: dict[type, Callable[[_Decision, Any], None]] = {
    **{command_type: _handle_command for command_type in _COMMAND_HANDLERS},
    QueryCommand: _query,
    CreditLeg: _credit_leg,
    RefundLeg: _refund_leg,
    SettleLeg: _settle_leg,
    BatchPrepare: _batch_prepare,
    BatchVote: _batch_vote,
    BatchDecision: _batch_decision,
    BatchAck: _batch_ack,
    Tick: _tick,
}
