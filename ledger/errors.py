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


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    code: ErrorCode
    message: str


class InvariantViolation(AssertionError):
    """A state the protocol makes impossible (a leg applied twice, a vote for an
    unknown batch). It means a bug or broken exactly-once delivery: the worker must
    stop before it writes anything, never skip the message."""
