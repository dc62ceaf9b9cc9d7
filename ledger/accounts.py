"""Accounts and holds, and the balance rules every flow shares.

Balance identities (checked by the tests after every step):
    available = balance - held
    lower_limit <= balance - held                      (nothing can push it lower)
    balance + pending_in + pending_out <= upper_limit   (nothing can push it higher)
`held` is reserved outgoing money (holds, prepared batch debits); `pending_in` is
reserved incoming money (prepared batch credits); `pending_out` is money already
debited for a cross-partition flow whose credit is not yet settled, which a refund
may bring back. Checking credits against all three makes every compensation safe.
"""

from __future__ import annotations

import dataclasses
import enum

from ledger.errors import ErrorCode, Rejection
from ledger.limits import AMOUNT_MAX


class AccountStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    LOCKED = "LOCKED"  # no new balance operations; reads, voids and in-flight completions go on
    CLOSED = "CLOSED"  # terminal; only at zero balance with nothing held or in flight


@dataclasses.dataclass(slots=True, kw_only=True)
class Account:
    account_id: str
    currency: str
    status: AccountStatus
    lower_limit: int
    upper_limit: int
    balance: int
    held: int
    pending_in: int
    pending_out: int
    sequence: int
    parent_account_id: str | None
    metadata: dict[str, str]
    created_at_ms: int
    updated_at_ms: int
    last_hash: str = ""  # the hash of its newest event (ledger/chain.py); "": none chained yet
    owner: str = ""  # the principal id of its holder, the OWNER who may move money out of it; "": none

    @property
    def available(self) -> int:
        return self.balance - self.held


class HoldStatus(enum.StrEnum):
    OPEN = "OPEN"
    CAPTURING = "CAPTURING"  # captured to another partition; the credit is in flight
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"


@dataclasses.dataclass(slots=True, kw_only=True)
class Hold:
    account_id: str
    hold_id: str
    amount: int
    currency: str
    status: HoldStatus
    expires_at_ms: int
    command_id: str
    created_at_ms: int


def account_not_found(account_id: str) -> Rejection:
    return Rejection(ErrorCode.ACCOUNT_NOT_FOUND, f"account {account_id} does not exist")


def check_usable(account: Account) -> Rejection | None:
    """New balance operations need an active account."""
    if account.status is AccountStatus.CLOSED:
        return Rejection(ErrorCode.ACCOUNT_CLOSED, f"account {account.account_id} is closed")
    if account.status is AccountStatus.LOCKED:
        return Rejection(ErrorCode.ACCOUNT_LOCKED, f"account {account.account_id} is locked")
    return None


def check_currency(account: Account, currency: str) -> Rejection | None:
    if account.currency != currency:
        return Rejection(
            ErrorCode.CURRENCY_MISMATCH,
            f"account {account.account_id} holds {account.currency}, not {currency}",
        )
    return None


def check_debit(account: Account, amount: int) -> Rejection | None:
    if account.held + amount > AMOUNT_MAX or account.pending_out + amount > AMOUNT_MAX:
        # Only reachable with a credit line near the 64-bit bound; nothing may leave it.
        return Rejection(
            ErrorCode.LIMIT_EXCEEDED,
            f"debiting {amount} would take account {account.account_id}'s held or pending money past {AMOUNT_MAX}",
        )
    if account.balance - account.held - amount < account.lower_limit:
        return Rejection(
            ErrorCode.INSUFFICIENT_FUNDS,
            f"account {account.account_id} has {account.balance - account.held - account.lower_limit} "
            f"available above its lower limit, {amount} requested",
        )
    return None


def check_credit(account: Account, amount: int) -> Rejection | None:
    if account.pending_in + amount > AMOUNT_MAX or (
        account.balance + account.pending_in + account.pending_out + amount > account.upper_limit
    ):
        return Rejection(
            ErrorCode.LIMIT_EXCEEDED,
            f"crediting {amount} would take account {account.account_id} above its upper limit {account.upper_limit}",
        )
    return None


def check_usable_for_debit(account: Account, currency: str, amount: int) -> Rejection | None:
    return check_usable(account) or check_currency(account, currency) or check_debit(account, amount)


def check_usable_for_credit(account: Account, currency: str, amount: int) -> Rejection | None:
    return check_usable(account) or check_currency(account, currency) or check_credit(account, amount)


def within_limits(account: Account) -> bool:
    """The invariant; checked after every change (`InvariantViolation` if it fails)."""
    return (
        account.lower_limit <= account.balance - account.held
        and account.balance + account.pending_in + account.pending_out <= account.upper_limit
        and account.held >= 0
        and account.pending_in >= 0
        and account.pending_out >= 0
    )
