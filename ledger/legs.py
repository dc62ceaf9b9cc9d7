"""Messages between shards, carried on the internal legs topic keyed by `routing_key`.

Kafka transactions make each of them exactly-once: a leg is written in the same
transaction as the state change and the consumed offset that caused it, and is read
with read_committed, so it is delivered once if and only if its cause committed.
"""

from __future__ import annotations

import dataclasses
import enum

from ledger.errors import ErrorCode
from ledger.events import CommandResult, Position
from ledger.principals import ANONYMOUS, Principal


class Flow(enum.StrEnum):
    """The money-moving flows that can cross partitions: debit here, credit there."""

    TRANSFER = "TRANSFER"
    CAPTURE = "CAPTURE"
    REVERSAL = "REVERSAL"


@dataclasses.dataclass(slots=True, kw_only=True)
class CreditLeg:
    """Source -> destination: the source has debited `amount`; credit it or refuse."""

    transfer_id: str
    flow: Flow
    from_account_id: str
    to_account_id: str
    amount: int
    currency: str
    command_id: str
    dedup_id: str
    command_type: str
    source_position: Position
    reversal_of: str | None
    metadata: dict[str, str]
    principal: Principal = ANONYMOUS  # the flow's command's (anonymous: a v1 leg)

    @property
    def routing_key(self) -> str:
        return self.to_account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class RefundLeg:
    """Destination -> source: the credit was refused; give the money back."""

    transfer_id: str
    flow: Flow
    from_account_id: str
    to_account_id: str
    amount: int
    code: ErrorCode
    message: str
    decided_at_ms: int
    source_sequence: int = 0  # the CreditLeg's source_position.sequence; 0: not stated (a v1 leg)

    @property
    def routing_key(self) -> str:
        return self.from_account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class SettleLeg:
    """Destination -> source: the credit is done; `result` is the final result it emitted."""

    transfer_id: str
    flow: Flow
    from_account_id: str
    to_account_id: str
    amount: int
    result: CommandResult
    source_sequence: int = 0  # the CreditLeg's source_position.sequence; 0: not stated (a v1 leg)

    @property
    def routing_key(self) -> str:
        return self.from_account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class BatchPrepare:
    """Coordinator -> participant: reserve this leg and vote."""

    batch_id: str
    leg_index: int
    account_id: str
    amount: int
    currency: str
    command_id: str
    dedup_id: str
    incarnation: int = 0  # which of the coordinator's batches with this id; 0: not stated (a v1 leg)
    # The account's postings in batch order when it appears more than once (the first is
    # `amount`, at `leg_index`); empty: its one posting is `amount`.
    postings: list[int] = dataclasses.field(default_factory=list)
    principal: Principal = ANONYMOUS  # the batch's: a debit must be its own account's (anonymous: a v1 leg)

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class BatchVote:
    """Participant -> coordinator."""

    batch_id: str
    leg_index: int
    account_id: str
    accepted: bool
    code: ErrorCode | None
    message: str
    incarnation: int = 0  # echoed from the BatchPrepare
    sequence: int = 0  # accepted: the account's sequence after the reservation; 0 otherwise, or not stated

    @property
    def routing_key(self) -> str:
        return self.batch_id


@dataclasses.dataclass(slots=True, kw_only=True)
class BatchDecision:
    """Coordinator -> participant: apply (commit) or release (abort) the reserved leg."""

    batch_id: str
    leg_index: int
    account_id: str
    commit: bool
    command_id: str
    dedup_id: str
    code: ErrorCode | None
    incarnation: int = 0  # the batch's; 0: not stated (a v1 leg)
    sequence: int = 0  # a commit: the reservation's sequence from the vote; 0: not stated
    principal: Principal = ANONYMOUS  # the batch's (anonymous: a v1 leg)

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class BatchAck:
    """Participant -> coordinator: the decision is applied; the account as it left it."""

    batch_id: str
    leg_index: int
    account_id: str
    position: Position | None
    incarnation: int = 0  # echoed from the BatchDecision

    @property
    def routing_key(self) -> str:
        return self.batch_id


@dataclasses.dataclass(slots=True, kw_only=True)
class Tick:
    """Moves a partition's clock forward when no other message does (hold expiry,
    batch timeouts, dedup retention). Written by the partition's own worker."""

    worker_id: str


Leg = CreditLeg | RefundLeg | SettleLeg | BatchPrepare | BatchVote | BatchDecision | BatchAck

# Every message the legs topic carries.
LEG_TYPES: tuple[type, ...] = (CreditLeg, RefundLeg, SettleLeg, BatchPrepare, BatchVote, BatchDecision, BatchAck, Tick)
