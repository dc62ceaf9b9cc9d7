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
reversal refers to, for the retention window. A CreditLeg delivered again (replayed or
forged) is never credited twice, however late: each source account's CreditLegs reach a
partition in the order of the source's sequence, and the destination keeps, per source
account, the sequence of the newest credit it decided (`CreditMark`, kept for ever, one
small record per source account). A leg at or below its mark is refused
(DUPLICATE_LEG_DELIVERY); if its `TransferRecord` is gone or differs it is also answered
with a RefundLeg (CREDIT_OUT_OF_ORDER), which its source applies only if that very flow,
at that very sequence, is still in flight there — which only a forged mark can cause.
"""

from __future__ import annotations

import dataclasses

from ledger.accounts import Account, account_not_found, check_usable_for_credit, check_usable_for_debit
from ledger.commands import MutatingCommand, Transfer
from ledger.decision import CommandIdentity, Decision
from ledger.errors import ErrorCode, InvariantViolation, RefusalCode, Rejection
from ledger.events import CommandResult, EventKind, position
from ledger.flows.velocity_rules import count_outgoing, outgoing_rejection
from ledger.keys import dedup_key
from ledger.legs import CreditLeg, Flow, RefundLeg, SettleLeg
from ledger.state import CreditMark, OutgoingTransfer, Table, TransferRecord

_CREDITED = {
    Flow.TRANSFER: EventKind.TRANSFER_CREDITED,
    Flow.CAPTURE: EventKind.CAPTURE_CREDITED,
    Flow.REVERSAL: EventKind.REVERSAL_CREDITED,
}


def transfer(decision: Decision, command: Transfer) -> CommandResult | None:
    source = decision.account(command.from_account_id)
    if source is None:
        return decision.result(command, rejection=account_not_found(command.from_account_id))
    rejection = check_usable_for_debit(source, command.currency, command.amount) or outgoing_rejection(
        decision, source, amount=command.amount, command=command
    )
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    result = move_money(
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
    if result is None or result.code is None:  # debited: in flight to another shard, or done here
        count_outgoing(decision, source.account_id, amount=command.amount)
    return result


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
            source_sequence=source.sequence,
            principal=command.principal,
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
            principal=command.principal,
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
    if decision.is_local(leg.from_account_id):
        decision.refuse(
            RefusalCode.INVALID_LEG,
            f"a CreditLeg from {leg.from_account_id}, an account of this partition: a move between accounts of one "
            "partition never sends one",
        )
        return
    source_sequence = leg.source_position.sequence
    mark: CreditMark | None = decision.store.get(Table.CREDIT_MARKS, leg.from_account_id)
    if mark is not None and source_sequence <= mark.sequence:
        _refuse_replayed_credit(decision, leg, mark)
        return
    decision.store.put(Table.CREDIT_MARKS, leg.from_account_id, CreditMark(sequence=source_sequence))
    destination = _creditable(
        decision, account_id=leg.to_account_id, currency=leg.currency, amount=leg.amount, transfer_id=leg.transfer_id
    )
    if isinstance(destination, Rejection):
        _refund(decision, leg, destination)
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
    _record_credited_transfer(
        decision,
        transfer_id=leg.transfer_id,
        flow=leg.flow,
        from_account_id=leg.from_account_id,
        destination=destination,
        amount=leg.amount,
    )
    result = decision.result(
        CommandIdentity(
            command_id=leg.command_id, dedup_id=leg.dedup_id, command_type=leg.command_type, principal=leg.principal
        ),
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
            source_sequence=source_sequence,
        )
    )


def _refund(decision: Decision, leg: CreditLeg, rejection: Rejection) -> None:
    decision.outcome.legs.append(
        RefundLeg(
            transfer_id=leg.transfer_id,
            flow=leg.flow,
            from_account_id=leg.from_account_id,
            to_account_id=leg.to_account_id,
            amount=leg.amount,
            code=rejection.code,
            message=rejection.message,
            decided_at_ms=decision.now,
            source_sequence=leg.source_position.sequence,
        )
    )


def _refuse_replayed_credit(decision: Decision, leg: CreditLeg, mark: CreditMark) -> None:
    """A credit at or below its source's mark was decided here before: never credit it again.
    Credited and still remembered, its settle went back then; otherwise the source gets a
    refund it applies only if this flow is in flight there at this sequence."""
    record: TransferRecord | None = decision.store.get(Table.TRANSFERS, leg.transfer_id)
    credited = record is not None and (
        record.flow,
        record.from_account_id,
        record.to_account_id,
        record.amount,
        record.currency,
    ) == (leg.flow, leg.from_account_id, leg.to_account_id, leg.amount, leg.currency)
    decision.refuse(
        RefusalCode.DUPLICATE_LEG_DELIVERY,
        f"CreditLeg {leg.transfer_id} from {leg.from_account_id} at its sequence {leg.source_position.sequence}: this "
        f"partition already decided its credits up to sequence {mark.sequence}"
        + ("; it was credited here" if credited else "; answered with a refund its source checks"),
    )
    if not credited:
        _refund(
            decision,
            leg,
            Rejection(
                ErrorCode.CREDIT_OUT_OF_ORDER,
                f"the destination's partition already applied a later credit from {leg.from_account_id} (sequence "
                f"{mark.sequence}) than this one ({leg.source_position.sequence}): a replayed or forged leg",
            ),
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
