"""The end of a move across shards, back at the source: the SettleLeg or the RefundLeg.

The destination's shard credited the move and published its final result (SettleLeg):
here the money leaves `pending_out`, a captured hold is finished, and duplicates waiting
for the result are answered. Or the destination refused it (RefundLeg): the money comes
back, a captured hold reopens (or expires), a reversal is cancelled, and the rejection —
with the destination's code — is the command's final result. Either way the
`OutgoingTransfer` is gone.

A settle or refund is applied only to the flow it was sent for: one for no flow in flight
here is refused (UNKNOWN_FLOW: a second delivery, or a forgery), and so is one whose flow,
accounts, amount or source sequence differ from the flow's (LEG_MISMATCH: a replay of an
earlier flow whose id a client reused, or a forgery). A settle's result must be the
accepted result of that flow's command.
"""

from __future__ import annotations

from ledger.accounts import Account
from ledger.decision import CommandIdentity, Decision
from ledger.errors import InvariantViolation, RefusalCode, Rejection
from ledger.events import EventKind, ResultStatus, position
from ledger.flows import holds, reversals
from ledger.legs import Flow, RefundLeg, SettleLeg
from ledger.state import OutgoingTransfer, Table

_REFUNDED = {
    Flow.TRANSFER: EventKind.TRANSFER_REFUNDED,
    Flow.CAPTURE: EventKind.CAPTURE_REFUNDED,
    Flow.REVERSAL: EventKind.REVERSAL_REFUNDED,
}
_SETTLED = {
    Flow.TRANSFER: EventKind.TRANSFER_SETTLED,
    Flow.CAPTURE: EventKind.CAPTURE_SETTLED,
    Flow.REVERSAL: EventKind.REVERSAL_SETTLED,
}


def settle_leg(decision: Decision, leg: SettleLeg) -> None:
    outgoing = _outgoing_for(decision, leg)
    if outgoing is None:
        return
    mismatch = _settle_result_mismatch(leg, outgoing)
    if mismatch is not None:
        decision.refuse(RefusalCode.LEG_MISMATCH, f"SettleLeg {leg.transfer_id}: {mismatch}")
        return
    decision.principal = outgoing.principal  # the flow's command's, as its record keeps it
    source = _take_outgoing(decision, outgoing)
    source.pending_out -= outgoing.amount
    held_change = 0
    if outgoing.flow is Flow.CAPTURE:
        held_change = holds.settle_capture(decision, source, outgoing)
    decision.emit(
        source,
        _SETTLED[outgoing.flow],
        held_change=held_change,
        command_id=outgoing.command_id,
        dedup_id=outgoing.dedup_id,
        correlation_id=leg.transfer_id,
        counterparty_account_id=outgoing.to_account_id,
    )
    # The destination already published this result; only the waiters' copies are new.
    decision.finalize(outgoing.dedup_key, leg.result, publish=False)


def refund_leg(decision: Decision, leg: RefundLeg) -> None:
    outgoing = _outgoing_for(decision, leg)
    if outgoing is None:
        return
    decision.principal = outgoing.principal  # the flow's command's, as its record keeps it
    source = _take_outgoing(decision, outgoing)
    source.balance += outgoing.amount
    source.pending_out -= outgoing.amount
    held_change = 0
    if outgoing.flow is Flow.CAPTURE:
        held_change = holds.reopen_hold(decision, source, outgoing)
    elif outgoing.flow is Flow.REVERSAL:
        reversals.cancel(decision, outgoing)
    decision.emit(
        source,
        _REFUNDED[outgoing.flow],
        amount=outgoing.amount,
        held_change=held_change,
        command_id=outgoing.command_id,
        dedup_id=outgoing.dedup_id,
        correlation_id=leg.transfer_id,
        counterparty_account_id=outgoing.to_account_id,
        code=leg.code,
    )
    decision.finalize(
        outgoing.dedup_key,
        decision.result(
            CommandIdentity(
                command_id=outgoing.command_id,
                dedup_id=outgoing.dedup_id,
                command_type=outgoing.command_type,
                principal=outgoing.principal,
            ),
            rejection=Rejection(leg.code, leg.message),
            reference_id=leg.transfer_id,
            positions=[position(source)],
        ),
    )


def _outgoing_for(decision: Decision, leg: SettleLeg | RefundLeg) -> OutgoingTransfer | None:
    """The flow in flight this leg ends, if it is exactly the flow the leg names; else the
    leg is refused and None returned."""
    name = type(leg).__name__
    outgoing: OutgoingTransfer | None = decision.store.get(Table.OUTGOING, leg.transfer_id)
    if outgoing is None:
        decision.refuse(RefusalCode.UNKNOWN_FLOW, f"{name} for transfer {leg.transfer_id}, which is not in flight here")
        return None
    stated = (leg.flow, leg.from_account_id, leg.to_account_id, leg.amount)
    recorded = (outgoing.flow, outgoing.from_account_id, outgoing.to_account_id, outgoing.amount)
    if stated != recorded:
        decision.refuse(
            RefusalCode.LEG_MISMATCH,
            f"{name} {leg.transfer_id} states (flow, from, to, amount) {stated}; the flow in flight is {recorded}",
        )
        return None
    if leg.source_sequence and outgoing.source_sequence and leg.source_sequence != outgoing.source_sequence:
        decision.refuse(
            RefusalCode.LEG_MISMATCH,
            f"{name} {leg.transfer_id} answers the debit at sequence {leg.source_sequence}; the flow in flight was "
            f"debited at {outgoing.source_sequence} (a leg of an earlier flow with the same id)",
        )
        return None
    return outgoing


def _settle_result_mismatch(leg: SettleLeg, outgoing: OutgoingTransfer) -> str | None:
    """A settle carries the final result the destination published: the accepted result of
    this flow's command, with the source and the destination as they were left."""
    result = leg.result
    stated = (result.command_id, result.dedup_id, result.command_type, result.reference_id, result.original_command_id)
    command_id = outgoing.command_id
    expected = (command_id, outgoing.dedup_id, outgoing.command_type, outgoing.transfer_id, command_id)
    if stated != expected:
        return f"its result is of {stated}, not of the flow's command {expected}"
    if result.status is not ResultStatus.ACCEPTED or result.code is not None or result.replayed:
        return "its result is not a first acceptance"
    if result.queried is not None:
        return "its result carries a queried result"
    accounts = [found.account_id for found in result.positions]
    if accounts != [outgoing.from_account_id, outgoing.to_account_id]:
        return f"its result's positions are of {accounts}"
    return None


def _take_outgoing(decision: Decision, outgoing: OutgoingTransfer) -> Account:
    """The flow is no longer in flight; returns its source account."""
    source = decision.account(outgoing.from_account_id)
    if source is None:
        raise InvariantViolation(
            f"account {outgoing.from_account_id} vanished with transfer {outgoing.transfer_id} in flight"
        )
    decision.store.delete(Table.OUTGOING, outgoing.transfer_id)
    return source
