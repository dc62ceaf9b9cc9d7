"""What the ledger says: account events (the audit trail) and command results.

Records here, like commands and legs, are never changed once made; they are not frozen
only because frozen dataclasses take twice as long to build, on the hot path.

Every change to an account is one `AccountEvent` carrying the account's state after
it, with a per-account `sequence` that increases by exactly one per event. A consumer
can rebuild any account from its latest event alone, and check gap-freedom per account.
"""

from __future__ import annotations

import dataclasses
import enum

from ledger.accounts import Account, AccountStatus
from ledger.errors import ErrorCode
from ledger.principals import ANONYMOUS, Principal


class EventKind(enum.StrEnum):
    OPENED = "OPENED"
    LIMITS_UPDATED = "LIMITS_UPDATED"
    LOCKED = "LOCKED"
    UNLOCKED = "UNLOCKED"
    CLOSED = "CLOSED"
    DEPOSITED = "DEPOSITED"
    WITHDRAWN = "WITHDRAWN"
    TRANSFER_DEBITED = "TRANSFER_DEBITED"
    TRANSFER_CREDITED = "TRANSFER_CREDITED"
    TRANSFER_REFUNDED = "TRANSFER_REFUNDED"
    TRANSFER_SETTLED = "TRANSFER_SETTLED"
    HOLD_PLACED = "HOLD_PLACED"
    HOLD_VOIDED = "HOLD_VOIDED"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    HOLD_CAPTURED = "HOLD_CAPTURED"
    CAPTURE_CREDITED = "CAPTURE_CREDITED"
    CAPTURE_REFUNDED = "CAPTURE_REFUNDED"
    CAPTURE_SETTLED = "CAPTURE_SETTLED"
    REVERSAL_DEBITED = "REVERSAL_DEBITED"
    REVERSAL_CREDITED = "REVERSAL_CREDITED"
    REVERSAL_REFUNDED = "REVERSAL_REFUNDED"
    REVERSAL_SETTLED = "REVERSAL_SETTLED"
    BATCH_PREPARED = "BATCH_PREPARED"
    BATCH_COMMITTED = "BATCH_COMMITTED"
    BATCH_RELEASED = "BATCH_RELEASED"
    OWNER_ASSIGNED = "OWNER_ASSIGNED"  # added after v1


@dataclasses.dataclass(slots=True, kw_only=True)
class AccountEvent:
    account_id: str
    sequence: int
    kind: EventKind
    amount: int  # signed change of `balance` in minor units (0 for events that move only holds)
    held_change: int  # signed change of `held` (holds, prepared batch debits)
    currency: str
    balance: int
    held: int
    available: int
    pending_in: int
    pending_out: int
    lower_limit: int
    upper_limit: int
    status: AccountStatus
    parent_account_id: str | None
    metadata: dict[str, str] | None  # the account's on OPENED, else the command's (audit)
    command_id: str
    dedup_id: str
    correlation_id: str | None  # the transfer, hold or batch this event belongs to
    counterparty_account_id: str | None
    code: ErrorCode | None  # why, for refunds, releases and expiries
    occurred_at_ms: int
    # The account's hash chain (ledger/chain.py): the hash of its event before this one
    # (GENESIS_HASH for the first), and SHA-256 of this event's content; "": written before the chain.
    previous_hash: str = ""
    hash: str = ""
    owner: str = ""  # the account's, after the change; "": none (or an event written before v2)
    principal: Principal = ANONYMOUS  # whose command caused it; anonymous: time alone (a hold's expiry)


def account_event(
    account: Account,
    *,
    kind: EventKind,
    amount: int,
    held_change: int,
    command_id: str,
    dedup_id: str,
    occurred_at_ms: int,
    correlation_id: str | None = None,
    counterparty_account_id: str | None = None,
    code: ErrorCode | None = None,
    metadata: dict[str, str] | None = None,
    principal: Principal = ANONYMOUS,
) -> AccountEvent:
    return AccountEvent(
        account_id=account.account_id,
        sequence=account.sequence,
        kind=kind,
        amount=amount,
        held_change=held_change,
        currency=account.currency,
        balance=account.balance,
        held=account.held,
        available=account.balance - account.held,
        pending_in=account.pending_in,
        pending_out=account.pending_out,
        lower_limit=account.lower_limit,
        upper_limit=account.upper_limit,
        status=account.status,
        parent_account_id=account.parent_account_id,
        metadata=metadata or None,
        command_id=command_id,
        dedup_id=dedup_id,
        correlation_id=correlation_id,
        counterparty_account_id=counterparty_account_id,
        code=code,
        occurred_at_ms=occurred_at_ms,
        owner=account.owner,
        principal=principal,
    )


class ResultStatus(enum.StrEnum):
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


@dataclasses.dataclass(slots=True, kw_only=True)
class Position:
    """An account as a command left it: read-your-writes waits for `sequence`."""

    account_id: str
    sequence: int
    balance: int
    available: int


@dataclasses.dataclass(slots=True, kw_only=True)
class CommandResult:
    """The one final answer to a command, keyed by `command_id`."""

    command_id: str
    dedup_id: str
    command_type: str
    status: ResultStatus
    code: ErrorCode | None
    message: str
    reference_id: str | None  # transfer, hold or batch id
    positions: list[Position]
    replayed: bool  # a duplicate answered from the dedup memory
    original_command_id: str  # == command_id unless replayed
    decided_at_ms: int
    queried: CommandResult | None  # the looked-up result, for QueryCommand
    principal: Principal = ANONYMOUS  # who sent the command


def position(account: Account) -> Position:
    return Position(
        account_id=account.account_id,
        sequence=account.sequence,
        balance=account.balance,
        available=account.balance - account.held,
    )
