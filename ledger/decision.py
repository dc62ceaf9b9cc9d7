"""The working set of one `Shard.handle` call, shared by every flow.

A `Decision` gives a flow the state (through the store it was handed), the partition's
time (`now`), and the one way to record what it decides: `emit` an account's change as
its next event, build a `result`, `retain` a record for the retention window, and
`finalize` a flow that was in flight. `finish` writes what the call keeps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from ledger import retention
from ledger.accounts import Account, within_limits
from ledger.chain import chain
from ledger.commands import MutatingCommand, QueryCommand
from ledger.errors import ErrorCode, InputRefusal, InvariantViolation, RefusalCode, Rejection
from ledger.events import CommandResult, EventKind, Position, ResultStatus, account_event
from ledger.keys import META_KEY
from ledger.principals import ANONYMOUS, Principal
from ledger.state import DedupEntry, RetainedKey, ShardMeta, Store, Table

if TYPE_CHECKING:  # ledger.shard imports every flow, and every flow imports this module
    from ledger.shard import Outcome, ShardConfig


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommandIdentity:
    """The command a result answers, when the command itself is not in hand (a flow that
    ends on another shard, or after legs came back)."""

    command_id: str
    dedup_id: str
    command_type: str
    principal: Principal = ANONYMOUS


class Decision:
    __slots__ = ("config", "input_events_from", "is_local", "meta", "now", "outcome", "principal", "retained", "store")

    def __init__(
        self,
        *,
        store: Store,
        config: ShardConfig,
        is_local: Callable[[str], bool],
        meta: ShardMeta,
        outcome: Outcome,
    ) -> None:
        self.store = store
        self.config = config
        self.is_local = is_local
        self.meta = meta
        self.now = meta.clock_ms
        self.outcome = outcome
        self.retained: list[RetainedKey] = []
        # Whose input this is: on every event it causes. The input's own principal (a
        # command's, a leg's), or the one a flow's record keeps; anonymous for time alone.
        self.principal = ANONYMOUS
        # Where the input's own events start: time may have released holds before it.
        self.input_events_from = 0

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
        event = account_event(
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
            principal=self.principal,
        )
        chain(event, previous_hash=account.last_hash)
        account.last_hash = event.hash
        self.store.put(Table.ACCOUNTS, account.account_id, account)
        self.outcome.events.append(event)

    def input_began(self) -> None:
        """What time released is done: the events from here on are the input's own."""
        self.input_events_from = len(self.outcome.events)

    def refuse(self, code: RefusalCode, reason: str) -> None:
        """This input (a leg) does not fit the state: it changes nothing, and is dead-lettered
        (what time released before it stands)."""
        if self.outcome.refused is not None or len(self.outcome.events) > self.input_events_from:
            raise InvariantViolation(f"a leg refused ({code}: {reason}) after it was refused or changed an account")
        self.outcome.refused = InputRefusal(code, reason)

    def retain(self, table: Table, key: str) -> None:
        """Keep this record for the retention window, then forget it (FIFO, deterministic)."""
        self.retained.append(RetainedKey(table=table, key=key))

    def finish(self) -> None:
        meta = self.meta
        if self.retained:
            retention.record(self.store, meta, keys=self.retained, recorded_at_ms=self.now)
        self.store.put(Table.META, META_KEY, meta)

    # -- results ----------------------------------------------------------------------

    def result(
        self,
        command: MutatingCommand | QueryCommand | CommandIdentity,
        *,
        rejection: Rejection | None = None,
        positions: list[Position] | None = None,
        reference_id: str | None = None,
        message: str = "",
        queried: CommandResult | None = None,
    ) -> CommandResult:
        """A command's first (not replayed) result, decided now: accepted, or rejected with
        the rejection's code and message. Every result the shard decides is built here: of
        the command in hand, or of one whose flow ends here (given by its identity)."""
        principal = command.principal
        if isinstance(command, CommandIdentity):
            command_id, dedup_id, command_type = command.command_id, command.dedup_id, command.command_type
        else:
            command_id, dedup_id, command_type = (
                command.command_id,
                getattr(command, "dedup_id", ""),
                type(command).__name__,
            )
        return CommandResult(
            command_id=command_id,
            dedup_id=dedup_id,
            command_type=command_type,
            status=ResultStatus.ACCEPTED if rejection is None else ResultStatus.REJECTED,
            code=None if rejection is None else rejection.code,
            message=message if rejection is None else rejection.message,
            reference_id=reference_id,
            positions=positions or [],
            replayed=False,
            original_command_id=command_id,
            decided_at_ms=self.now,
            queried=queried,
            principal=principal,
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
