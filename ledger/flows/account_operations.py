"""Commands on one account: open, update limits, lock, unlock, close, deposit, withdraw,
assign its owner.

Each is decided here in one step, after `intake`; the account's existence first, then
its status, currency and state, then funds and limits (the precedence of ErrorCode).
"""

from __future__ import annotations

from ledger.accounts import (
    Account,
    AccountStatus,
    account_not_found,
    check_currency,
    check_usable,
    check_usable_for_credit,
    check_usable_for_debit,
)
from ledger.commands import (
    AssignOwner,
    CloseAccount,
    Deposit,
    LockAccount,
    OpenAccount,
    UnlockAccount,
    UpdateLimits,
    Withdraw,
)
from ledger.decision import Decision
from ledger.errors import ErrorCode, Rejection
from ledger.events import CommandResult, EventKind, position
from ledger.flows.velocity_rules import count_outgoing, outgoing_rejection


def open_account(decision: Decision, command: OpenAccount) -> CommandResult:
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
        owner=command.owner,
    )
    decision.emit(
        account, EventKind.OPENED, command_id=command.command_id, dedup_id=command.dedup_id, metadata=command.metadata
    )
    return decision.result(command, positions=[position(account)], reference_id=command.account_id)


def update_limits(decision: Decision, command: UpdateLimits) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
    if account.status is AccountStatus.CLOSED:
        return decision.result(command, rejection=check_usable(account))
    rejection = check_currency(account, command.currency)  # limits of a locked account may change
    if rejection is not None:
        return decision.result(command, rejection=rejection)
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


def lock_account(decision: Decision, command: LockAccount) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
    rejection = check_usable(account)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    account.status = AccountStatus.LOCKED
    decision.emit(account, EventKind.LOCKED, command_id=command.command_id, dedup_id=command.dedup_id)
    return decision.result(command, positions=[position(account)])


def unlock_account(decision: Decision, command: UnlockAccount) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
    if account.status is not AccountStatus.LOCKED:
        rejection = check_usable(account) or Rejection(
            ErrorCode.ACCOUNT_NOT_LOCKED, f"account {command.account_id} is not locked"
        )
        return decision.result(command, rejection=rejection)
    account.status = AccountStatus.ACTIVE
    decision.emit(account, EventKind.UNLOCKED, command_id=command.command_id, dedup_id=command.dedup_id)
    return decision.result(command, positions=[position(account)])


def close_account(decision: Decision, command: CloseAccount) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
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


def deposit(decision: Decision, command: Deposit) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
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


def withdraw(decision: Decision, command: Withdraw) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
    rejection = check_usable_for_debit(account, command.currency, command.amount) or outgoing_rejection(
        decision, account, amount=command.amount, command=command
    )
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    account.balance -= command.amount
    count_outgoing(decision, account.account_id, amount=command.amount)
    decision.emit(
        account,
        EventKind.WITHDRAWN,
        amount=-command.amount,
        command_id=command.command_id,
        dedup_id=command.dedup_id,
        metadata=command.metadata,
    )
    return decision.result(command, positions=[position(account)])


def assign_owner(decision: Decision, command: AssignOwner) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
    if account.status is AccountStatus.CLOSED:
        return decision.result(command, rejection=check_usable(account))
    account.owner = command.owner
    decision.emit(account, EventKind.OWNER_ASSIGNED, command_id=command.command_id, dedup_id=command.dedup_id)
    return decision.result(command, positions=[position(account)])
