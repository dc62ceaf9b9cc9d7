"""The end of a move across shards, back at the source: the SettleLeg or the RefundLeg.

The destination's shard credited the move and published its final result (SettleLeg):
here the money leaves `pending_out`, a captured hold is finished, and duplicates waiting
for the result are answered. Or the destination refused it (RefundLeg): the money comes
back, a captured hold reopens (or expires), a reversal is cancelled, and the rejection —
with the destination's code — is the command's final result. Either way the
`OutgoingTransfer` is gone; a second leg for it is an `InvariantViolation`.
"""

from __future__ import annotations

from ledger.accounts import Account
from ledger.decision import CommandIdentity, Decision
from ledger.errors import InvariantViolation, Rejection
from ledger.events import EventKind, position
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
    outgoing, source = _take_outgoing(decision, leg.transfer_id, "settle")
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
    outgoing, source = _take_outgoing(decision, leg.transfer_id, "refund")
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
                command_id=outgoing.command_id, dedup_id=outgoing.dedup_id, command_type=outgoing.command_type
            ),
            rejection=Rejection(leg.code, leg.message),
            reference_id=leg.transfer_id,
            positions=[position(source)],
        ),
    )


def _take_outgoing(decision: Decision, transfer_id: str, leg_name: str) -> tuple[OutgoingTransfer, Account]:
    """The flow in flight that this leg ends, and its source account; no longer in flight."""
    outgoing: OutgoingTransfer | None = decision.store.get(Table.OUTGOING, transfer_id)
    if outgoing is None:
        raise InvariantViolation(f"{leg_name} for transfer {transfer_id}, which is not in flight here")
    source = decision.account(outgoing.from_account_id)
    if source is None:
        raise InvariantViolation(f"account {outgoing.from_account_id} vanished with transfer {transfer_id} in flight")
    decision.store.delete(Table.OUTGOING, transfer_id)
    return outgoing, source
