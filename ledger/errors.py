"""Stable rejection codes. Rejections are values, never exceptions.

The enum's order is the precedence: when a command is wrong in several ways, the
checks run in this order and the first failing one is reported, so the same command
against the same state always gets the same code. One exception, by design: a command
whose ids and routing are well formed is first looked up in the dedup memory, so a
repeat is answered from it (or refused as DEDUP_CONFLICT) whatever its body. Codes are part of the public
contract (Avro enum `ErrorCode`): never rename or reuse one; add new ones at the end —
the wire order is append-only, so a code added after v1 says beside it where it ranks.
"""

from __future__ import annotations

import dataclasses
import enum


class ErrorCode(enum.StrEnum):
    # The message itself.
    MALFORMED = "MALFORMED"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    INVALID_CURRENCY = "INVALID_CURRENCY"
    INVALID_LIMITS = "INVALID_LIMITS"
    INVALID_EXPIRY = "INVALID_EXPIRY"
    SAME_ACCOUNT = "SAME_ACCOUNT"
    DUPLICATE_LEG = "DUPLICATE_LEG"
    UNBALANCED_BATCH = "UNBALANCED_BATCH"
    # Idempotency.
    DEDUP_CONFLICT = "DEDUP_CONFLICT"
    DUPLICATE_BACKLOG = "DUPLICATE_BACKLOG"
    # Existence.
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    ACCOUNT_EXISTS = "ACCOUNT_EXISTS"
    HOLD_NOT_FOUND = "HOLD_NOT_FOUND"
    HOLD_EXISTS = "HOLD_EXISTS"
    TRANSFER_NOT_FOUND = "TRANSFER_NOT_FOUND"
    COMMAND_NOT_FOUND = "COMMAND_NOT_FOUND"
    # Status.
    ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
    ACCOUNT_LOCKED = "ACCOUNT_LOCKED"
    ACCOUNT_NOT_LOCKED = "ACCOUNT_NOT_LOCKED"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    # State of the thing acted upon.
    HOLD_EXPIRED = "HOLD_EXPIRED"
    HOLD_ALREADY_FINALIZED = "HOLD_ALREADY_FINALIZED"
    ALREADY_REVERSED = "ALREADY_REVERSED"
    BALANCE_NOT_ZERO = "BALANCE_NOT_ZERO"
    # Funds and limits.
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    CAPTURE_EXCEEDS_HOLD = "CAPTURE_EXCEEDS_HOLD"
    # Protocol.
    BATCH_TIMEOUT = "BATCH_TIMEOUT"
    # Added after v1 (new codes go at the end: readers older than the writer see UNKNOWN).
    # A command id (or batch id, or credited transfer id) already taken: checked right after
    # the dedup memory for command ids, before existence for batch ids, at the credit for flows.
    ID_IN_USE = "ID_IN_USE"
    # Idempotency: the shard remembers as many commands as it may (`retained_entries_max`)
    # and refuses new ones until the window forgets the oldest. Checked after the dedup memory
    # and ID_IN_USE (a repeat is still answered), before the body's checks; not remembered.
    DEDUP_WINDOW_FULL = "DEDUP_WINDOW_FULL"
    # The destination refused a flow's credit because it had already applied a later credit
    # from the same source account (per source account, credits arrive in sequence order):
    # reachable only after a forged or replayed leg. Checked first at the credit, before the
    # destination's existence; the flow is refunded at its source.
    CREDIT_OUT_OF_ORDER = "CREDIT_OUT_OF_ORDER"
    # An outgoing payment would take the account past one of its velocity rules (ledger/velocity.py):
    # checked after funds and limits (it ranks with them, after LIMIT_EXCEEDED).
    VELOCITY_LIMIT_EXCEEDED = "VELOCITY_LIMIT_EXCEEDED"
    # The command's principal may not send it: a role it lacks, an account debited that is not
    # its own (ledger/authorization.py). Checked right after the ids and the routing, before the
    # dedup memory (a denied command is answered, not remembered, and learns nothing of what
    # another principal sent); on a batch's other shards, first at the prepare of a debit.
    FORBIDDEN = "FORBIDDEN"


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    code: ErrorCode
    message: str


class RefusalCode(enum.StrEnum):
    """Why a shard refused an input from the internal legs topic. A refused leg changes
    nothing; the worker dead-letters it with this code (`DeadLetter.reason_code`). Legs come
    from other shards, but anyone who can write to the topic can forge or replay one: a leg
    that does not fit the shard's state is input to refuse, never a reason to stop."""

    # Checked in this order.
    MISROUTED_LEG = "MISROUTED_LEG"  # its routing key belongs to another partition
    INVALID_LEG = "INVALID_LEG"  # a field no shard ever sends (see ledger/flows/leg_checks.py)
    UNKNOWN_FLOW = "UNKNOWN_FLOW"  # a settle or refund for a flow not in flight here
    UNKNOWN_BATCH = "UNKNOWN_BATCH"  # a vote or ack for a batch not coordinated here; a commit with nothing prepared
    LEG_MISMATCH = "LEG_MISMATCH"  # disagrees with what this shard recorded (amounts, accounts, sequence, phase…)
    DUPLICATE_LEG_DELIVERY = "DUPLICATE_LEG_DELIVERY"  # already applied: a credit, prepare, vote or ack delivered again


@dataclasses.dataclass(frozen=True, slots=True)
class InputRefusal:
    code: RefusalCode
    reason: str

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class InvariantViolation(AssertionError):
    """A state the shard itself cannot reach (a flow in flight whose account vanished, a
    retention entry missing from the queue). It means a bug: the worker must stop before it
    writes anything, never skip the message. Nothing an input can cause raises it — a
    command that does not fit is a rejection, a leg that does not fit an `InputRefusal`."""
