"""Money moved from one account to another: a transfer, and the move every such flow
(a transfer, a capture, a reversal) is made of.

A move debits the source and credits the destination. When the destination lives on
this shard both happen at once, and a destination that cannot be credited rejects the
whole command. Otherwise it is a saga across shards:

1. here, the source is debited and the money shows as its `pending_out`; an
   `OutgoingTransfer` remembers the flow and a `CreditLeg` goes to the destination's shard;
2. there, `credit_leg` credits the destination, publishes the final result (accepted) and
   sends a `SettleLeg` back — or refuses (missing, locked, closed, currency, limit, id in
   use) with a `RefundLeg`;
3. back here, `ledger.flows.settlement` settles (`pending_out` down) or refunds.

Every credited transfer is recorded where it was credited (`TransferRecord`): it is what a
reversal refers to, and a leg delivered twice then stops the shard instead of crediting twice.
"""

from __future__ import annotations

import dataclasses

from ledger.accounts import Account, account_not_found, check_usable_for_credit, check_usable_for_debit
from ledger.commands import MutatingCommand, Transfer
from ledger.decision import CommandIdentity, Decision
from ledger.errors import ErrorCode, InvariantViolation, Rejection
from ledger.events import CommandResult, EventKind, position
from ledger.keys import dedup_key
from ledger.legs import CreditLeg, Flow, RefundLeg, SettleLeg
from ledger.state import OutgoingTransfer, Table, TransferRecord

_CREDITED = {
    Flow.TRANSFER: EventKind.TRANSFER_CREDITED,
    Flow.CAPTURE: EventKind.CAPTURE_CREDITED,
    Flow.REVERSAL: EventKind.REVERSAL_CREDITED,
}


def transfer(decision: Decision, command: Transfer) -> CommandResult | None:
    source = decision.account(command.from_account_id)
    if source is None:
        return decision.result(command, rejection=account_not_found(command.from_account_id))
    rejection = check_usable_for_debit(source, command.currency, command.amount)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    return move_money(
        decision,
        source,
        Move(
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


# -- the move: the source's side ---------------------------------------------------------------------


@dataclasses.dataclass(slots=True, kw_only=True)
class Move:
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


def move_money(decision: Decision, source: Account, move: Move) -> CommandResult | None:
    """Debit `source` and credit the destination: at once when it lives here (rejecting
    the whole command if it cannot be credited), else through a CreditLeg (None: in flight)."""
    command = move.command
    if decision.is_local(move.to_account_id):
        destination = _creditable(
            decision,
            account_id=move.to_account_id,
            currency=move.currency,
            amount=move.amount,
            transfer_id=move.transfer_id,
        )
        if isinstance(destination, Rejection):
            return decision.result(command, rejection=destination)
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


def _debit_source(decision: Decision, source: Account, move: Move, *, in_flight: bool) -> None:
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


# -- the destination's side ---------------------------------------------------------------------


def credit_leg(decision: Decision, leg: CreditLeg) -> None:
    """Credit a flow debited on another shard and publish its final result, or refuse it."""
    destination = _creditable(
        decision, account_id=leg.to_account_id, currency=leg.currency, amount=leg.amount, transfer_id=leg.transfer_id
    )
    if isinstance(destination, Rejection):
        decision.outcome.legs.append(
            RefundLeg(
                transfer_id=leg.transfer_id,
                flow=leg.flow,
                from_account_id=leg.from_account_id,
                to_account_id=leg.to_account_id,
                amount=leg.amount,
                code=destination.code,
                message=destination.message,
                decided_at_ms=decision.now,
            )
        )
        return
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
    result = decision.result(
        CommandIdentity(command_id=leg.command_id, dedup_id=leg.dedup_id, command_type=leg.command_type),
        reference_id=leg.transfer_id,
        positions=[leg.source_position, position(destination)],
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


def _creditable(
    decision: Decision, *, account_id: str, currency: str, amount: int, transfer_id: str
) -> Account | Rejection:
    """The destination of a move, if it exists and can take the credit; else why not."""
    destination = decision.account(account_id)
    if destination is None:
        return account_not_found(account_id)
    return (
        check_usable_for_credit(destination, currency, amount)
        or _check_transfer_id_free(decision, transfer_id)
        or destination
    )


def _check_transfer_id_free(decision: Decision, transfer_id: str) -> Rejection | None:
    """A flow's id is its command's id, chosen by a client: one coming from another source
    shard may clash with a transfer credited here. Refuse it (the money goes back) rather
    than take the clash for a leg delivered twice."""
    if decision.store.get(Table.TRANSFERS, transfer_id) is not None:
        return Rejection(ErrorCode.ID_IN_USE, f"transfer id {transfer_id} was already credited here")
    return None


def _record_credited_transfer(
    decision: Decision, *, transfer_id: str, flow: Flow, from_account_id: str, destination: Account, amount: int
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
