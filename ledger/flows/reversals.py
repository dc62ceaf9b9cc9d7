"""ReverseTransfer: an earlier transfer sent back, at most once, within the retention window.

Sent to the account the transfer credited (the shard that holds its `TransferRecord`), it
is a move of its own (see `transfers`) from that account back to the transfer's source,
whose events reference the original. The record is marked reversed as soon as the
reversal is accepted or in flight, so a second one is refused at once; a refund of the
reversal clears the mark (`cancel`).
"""

from __future__ import annotations

from ledger.accounts import account_not_found, check_usable, check_usable_for_debit
from ledger.commands import ReverseTransfer
from ledger.decision import Decision
from ledger.errors import ErrorCode, InvariantViolation, Rejection
from ledger.events import CommandResult, EventKind, ResultStatus
from ledger.flows.transfers import Move, move_money
from ledger.legs import Flow
from ledger.state import OutgoingTransfer, Table, TransferRecord


def reverse_transfer(decision: Decision, command: ReverseTransfer) -> CommandResult | None:
    # Precedence of ErrorCode: the account's existence, then the transfer's, then the
    # account's status, then the transfer's state, then funds.
    source = decision.account(command.account_id)
    if source is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
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
    result = move_money(
        decision,
        source,
        Move(
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


def cancel(decision: Decision, outgoing: OutgoingTransfer) -> None:
    """The reversal was refunded: the transfer it reversed may be reversed again."""
    if outgoing.reversal_of is None:
        raise InvariantViolation(f"reversal {outgoing.transfer_id} in flight without the transfer it reverses")
    record: TransferRecord | None = decision.store.get(Table.TRANSFERS, outgoing.reversal_of)
    if record is not None:  # may have left the retention window meanwhile
        record.reversed_by = None
        decision.store.put(Table.TRANSFERS, record.transfer_id, record)
