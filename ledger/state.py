"""What a shard remembers, and the storage port it is handed.

A shard's state is a set of tables of domain records keyed by strings. The state
machine reads and writes them only through `Store`; the streams layer provides a
RocksDB store whose writes become visible (and durable) only when the Kafka
transaction that carries their changelog records commits. `InMemoryStore` serves
tests and the core's benchmark. Keys of ordered tables sort by time (zero-padded).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Protocol

from ledger.accounts import Account, Hold
from ledger.commands import BatchLeg
from ledger.errors import ErrorCode
from ledger.events import CommandResult, Position
from ledger.legs import Flow
from ledger.principals import ANONYMOUS, Principal
from ledger.velocity import VelocityState


class Table(enum.StrEnum):
    """One letter each: it prefixes keys in RocksDB and in the changelog."""

    ACCOUNTS = "a"
    HOLDS = "h"  # "<account>|<hold id>" -> Hold
    DEDUP = "d"  # "<routing key>|<dedup id>" -> DedupEntry
    COMMANDS = "c"  # command id -> CommandIndexEntry (query by command id)
    OUTGOING = "o"  # transfer id -> OutgoingTransfer (debited here, credit in flight)
    TRANSFERS = "t"  # transfer id -> TransferRecord (credited here; reversal, duplicate check)
    PREPARED = "p"  # "<batch id>|<account>" -> PreparedLeg (participant side)
    BATCHES = "b"  # batch id -> BatchState (coordinator side)
    RETENTION = "r"  # zero-padded number -> RetentionEntry (FIFO, oldest first)
    HOLD_EXPIRIES = "x"  # "<expires_at_ms:020>|<hold key>" -> ExpiryEntry
    BATCH_DEADLINES = "y"  # "<deadline_ms:020>|<batch id>" -> ExpiryEntry
    META = "m"  # "shard" -> ShardMeta
    CREDIT_MARKS = "s"  # source account id -> CreditMark (the newest credit applied here from it)
    VELOCITY = "v"  # account id -> VelocityState (its velocity rules and recent outgoing payments)


class Store(Protocol):
    def get(self, table: Table, key: str) -> Any: ...

    def put(self, table: Table, key: str, value: Any) -> None: ...

    def delete(self, table: Table, key: str) -> None: ...

    def first(self, table: Table) -> tuple[str, Any] | None:
        """The entry with the smallest key, for the ordered tables."""
        ...


@dataclasses.dataclass(slots=True, kw_only=True)
class DedupEntry:
    digest: bytes  # of the payload without command_id: same dedup id + other payload = conflict
    command_id: str
    command_type: str
    recorded_at_ms: int
    result: CommandResult | None  # None while the command's flow is in flight
    waiters: list[str]  # command ids of duplicates waiting for that result
    # Command ids of duplicates indexed for queries and ID_IN_USE (at most
    # DEDUP_DUPLICATES_INDEXED_MAX); forgotten with this entry.
    duplicates: list[str] = dataclasses.field(default_factory=list)
    # Rejected by its stateless checks (the message itself): a command with another payload
    # may take the dedup id over (see flows/intake.py).
    malformed: bool = False
    principal_id: str = ""  # who sent it (a QueryCommand by the same principal may ask); "": anonymous


@dataclasses.dataclass(slots=True, kw_only=True)
class CommandIndexEntry:
    dedup_key: str


@dataclasses.dataclass(slots=True, kw_only=True)
class OutgoingTransfer:
    transfer_id: str
    flow: Flow
    from_account_id: str
    to_account_id: str
    amount: int
    currency: str
    command_id: str
    dedup_id: str
    command_type: str
    dedup_key: str
    hold_key: str | None  # CAPTURE: the hold being captured
    reversal_of: str | None  # REVERSAL: the transfer being sent back
    # The source account's sequence after the debit (what its CreditLeg carries, and its
    # SettleLeg or RefundLeg must echo); 0: recorded before this was kept.
    source_sequence: int = 0
    principal: Principal = ANONYMOUS  # the command's: on the settle's or refund's events and result


@dataclasses.dataclass(slots=True, kw_only=True)
class TransferRecord:
    transfer_id: str
    flow: Flow
    from_account_id: str
    to_account_id: str
    amount: int
    currency: str
    credited_at_ms: int
    reversed_by: str | None  # the reversal's transfer id, once one is accepted


class PreparedStatus(enum.StrEnum):
    HELD = "HELD"  # a debit leg: amount added to `held`
    RESERVED = "RESERVED"  # a credit leg: amount added to `pending_in`


@dataclasses.dataclass(slots=True, kw_only=True)
class PreparedLeg:
    batch_id: str
    leg_index: int
    account_id: str
    amount: int
    status: PreparedStatus
    incarnation: int = 0  # the batch's incarnation at its coordinator; 0: not stated (a v1 prepare)
    sequence: int = 0  # the account's sequence after the reservation (its BATCH_PREPARED event)
    command_id: str = ""  # the batch command that reserved it
    dedup_id: str = ""
    # The account's postings in batch order when it appears more than once (`amount` is the
    # first); empty: its one posting is `amount`. See `flows/batches.py` for what is reserved.
    postings: list[int] = dataclasses.field(default_factory=list)


class BatchPhase(enum.StrEnum):
    PREPARING = "PREPARING"
    COMMITTING = "COMMITTING"
    ABORTING = "ABORTING"


@dataclasses.dataclass(slots=True, kw_only=True)
class BatchState:
    batch_id: str
    command_id: str
    dedup_id: str
    dedup_key: str
    legs: list[BatchLeg]
    phase: BatchPhase
    voted: list[bool]
    acked: list[bool]
    positions: list[Position]
    code: ErrorCode | None  # why it aborts
    message: str
    deadline_ms: int
    created_at_ms: int
    # Which of the coordinator's batches this is (ShardMeta.batches_started when it began):
    # a batch id can be reused once a batch ends, and legs of an earlier one must not count.
    incarnation: int = 0
    sequences: list[int] = dataclasses.field(default_factory=list)  # per leg: its reservation's sequence, 0: none
    # The leg whose no vote gave `code` (-1: none, or a timeout): of the no votes, the one of the
    # highest precedence (`flows/batches.py`), so the result does not depend on their order.
    code_leg_index: int = -1
    principal: Principal = ANONYMOUS  # the batch command's


@dataclasses.dataclass(slots=True, kw_only=True)
class RetainedKey:
    table: Table
    key: str


@dataclasses.dataclass(slots=True, kw_only=True)
class RetentionEntry:
    recorded_at_ms: int
    keys: list[RetainedKey]
    inputs: int = 1  # how many inputs' keys it holds: those of one millisecond share an entry


@dataclasses.dataclass(slots=True, kw_only=True)
class ExpiryEntry:
    key: str  # the hold key or batch id that expires


@dataclasses.dataclass(slots=True, kw_only=True)
class ShardMeta:
    clock_ms: int  # max message timestamp seen: the shard's only notion of time
    retention_head: int  # oldest live RetentionEntry number
    retention_tail: int  # next RetentionEntry number
    batches_started: int = 0  # batches coordinated here so far: the next one's incarnation is this + 1
    inputs_folded: int = 0  # inputs the live RetentionEntries hold beyond one each (see ledger/retention.py)


@dataclasses.dataclass(slots=True, kw_only=True)
class CreditMark:
    """The newest credit this shard applied from one source account: the source's sequence
    after that flow's debit. A source's CreditLegs to one partition arrive in the order of
    its sequence, so a credit at or below the mark has been decided here before (a replay),
    however long ago: the mark never leaves, unlike the retention window's records."""

    sequence: int


STATE_RECORD_TYPES: tuple[type, ...] = (
    Account,
    Hold,
    DedupEntry,
    CommandIndexEntry,
    OutgoingTransfer,
    TransferRecord,
    PreparedLeg,
    BatchState,
    RetentionEntry,
    ExpiryEntry,
    ShardMeta,
    CreditMark,
    VelocityState,
)


class InMemoryStore:
    """Dict-backed Store. With `isolate=True` it keeps copies, so a change the state
    machine forgets to `put` is lost here as it would be in RocksDB (tests use it)."""

    def __init__(self, *, isolate: bool = True) -> None:
        self._tables: dict[Table, dict[str, Any]] = {table: {} for table in Table}
        self._isolate = isolate

    def get(self, table: Table, key: str) -> Any:
        value = self._tables[table].get(key)
        return _copy(value) if self._isolate and value is not None else value

    def put(self, table: Table, key: str, value: Any) -> None:
        self._tables[table][key] = _copy(value) if self._isolate else value

    def delete(self, table: Table, key: str) -> None:
        self._tables[table].pop(key, None)

    def first(self, table: Table) -> tuple[str, Any] | None:
        rows = self._tables[table]
        if not rows:
            return None
        key = min(rows)
        return key, self.get(table, key)

    def items(self, table: Table) -> list[tuple[str, Any]]:
        return sorted(self._tables[table].items())


def _copy(value: Any) -> Any:
    """Deep enough for state records: their lists and dicts are copied too."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            field.name: _copy(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if isinstance(getattr(value, field.name), list | dict)
        }
        return dataclasses.replace(value, **changes)
    if isinstance(value, list):
        return [_copy(item) for item in value]
    if isinstance(value, dict):
        return dict(value)
    return value
