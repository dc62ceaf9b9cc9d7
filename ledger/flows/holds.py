"""Holds: money reserved on an account for a while, then captured, voided or expired.

PlaceHold reserves an amount (`held` up) until `expires_at_ms`. VoidHold releases it.
CaptureHold moves part or all of it to another account (a move, see `transfers`) and
releases the rest; captured to another shard, the hold is CAPTURING until the credit
is settled (`settle_capture`) or refused (`reopen_hold`). A hold at or past its expiry
can no longer be captured or voided, and the clock releases it (`expire`).
"""

from __future__ import annotations

from ledger.accounts import Account, Hold, HoldStatus, account_not_found, check_usable, check_usable_for_debit
from ledger.commands import CaptureHold, PlaceHold, VoidHold
from ledger.decision import Decision
from ledger.errors import ErrorCode, InvariantViolation, Rejection
from ledger.events import CommandResult, EventKind, ResultStatus, position
from ledger.flows.transfers import Move, move_money
from ledger.keys import hold_key, time_key
from ledger.legs import Flow
from ledger.state import ExpiryEntry, OutgoingTransfer, Table


def place_hold(decision: Decision, command: PlaceHold) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
    key = hold_key(command.account_id, command.hold_id)
    if decision.store.get(Table.HOLDS, key) is not None:
        return decision.result(
            command, rejection=Rejection(ErrorCode.HOLD_EXISTS, f"hold {command.hold_id} already exists")
        )
    rejection = check_usable_for_debit(account, command.currency, command.amount)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    hold = Hold(
        account_id=command.account_id,
        hold_id=command.hold_id,
        amount=command.amount,
        currency=command.currency,
        status=HoldStatus.OPEN,
        expires_at_ms=decision.now + command.ttl_ms,
        command_id=command.command_id,
        created_at_ms=decision.now,
    )
    decision.store.put(Table.HOLDS, key, hold)
    decision.store.put(Table.HOLD_EXPIRIES, time_key(hold.expires_at_ms, key), ExpiryEntry(key=key))
    account.held += command.amount
    decision.emit(
        account,
        EventKind.HOLD_PLACED,
        held_change=command.amount,
        command_id=command.command_id,
        dedup_id=command.dedup_id,
        correlation_id=command.hold_id,
    )
    return decision.result(command, positions=[position(account)], reference_id=command.hold_id)


def void_hold(decision: Decision, command: VoidHold) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
    hold: Hold | None = decision.store.get(Table.HOLDS, hold_key(command.account_id, command.hold_id))
    if hold is None:
        return decision.result(command, rejection=_hold_not_found(command.hold_id))
    rejection = _check_hold_open(decision, hold)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    account.held -= hold.amount
    _finish_hold(decision, hold, HoldStatus.VOIDED)
    decision.emit(
        account,
        EventKind.HOLD_VOIDED,
        held_change=-hold.amount,
        command_id=command.command_id,
        dedup_id=command.dedup_id,
        correlation_id=command.hold_id,
    )
    return decision.result(command, positions=[position(account)], reference_id=command.hold_id)


def capture_hold(decision: Decision, command: CaptureHold) -> CommandResult | None:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
    key = hold_key(command.account_id, command.hold_id)
    hold: Hold | None = decision.store.get(Table.HOLDS, key)
    if hold is None:
        return decision.result(command, rejection=_hold_not_found(command.hold_id))
    rejection = (
        check_usable(account) or _check_hold_currency(hold, command.currency) or _check_hold_open(decision, hold)
    )
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    if command.amount > hold.amount:
        return decision.result(
            command,
            rejection=Rejection(
                ErrorCode.CAPTURE_EXCEEDS_HOLD, f"capture of {command.amount} exceeds hold of {hold.amount}"
            ),
        )
    local = decision.is_local(command.to_account_id)
    # Here the whole hold is released at once; in flight only the captured part is, so
    # that a refund can restore the hold exactly (see reopen_hold).
    held_change = -hold.amount if local else -command.amount
    result = move_money(
        decision,
        account,
        Move(
            flow=Flow.CAPTURE,
            command=command,
            transfer_id=command.command_id,
            to_account_id=command.to_account_id,
            amount=command.amount,
            currency=hold.currency,
            debit_kind=EventKind.HOLD_CAPTURED,
            held_change=held_change,
            hold_key=key,
        ),
    )
    if result is None:
        hold.status = HoldStatus.CAPTURING
        decision.store.put(Table.HOLDS, key, hold)
    elif result.status is ResultStatus.ACCEPTED:
        _finish_hold(decision, hold, HoldStatus.CAPTURED)
    return result


def _hold_not_found(hold_id: str) -> Rejection:
    return Rejection(ErrorCode.HOLD_NOT_FOUND, f"no hold {hold_id} on this account")


def _check_hold_currency(hold: Hold, currency: str) -> Rejection | None:
    """A capture's amount is priced in its currency: a hold in another is not captured by it."""
    if hold.currency != currency:
        return Rejection(ErrorCode.CURRENCY_MISMATCH, f"hold {hold.hold_id} holds {hold.currency}, not {currency}")
    return None


def _check_hold_open(decision: Decision, hold: Hold) -> Rejection | None:
    if hold.status is HoldStatus.EXPIRED or (hold.status is HoldStatus.OPEN and decision.now >= hold.expires_at_ms):
        return Rejection(ErrorCode.HOLD_EXPIRED, f"hold {hold.hold_id} expired at {hold.expires_at_ms}")
    if hold.status is not HoldStatus.OPEN:
        return Rejection(ErrorCode.HOLD_ALREADY_FINALIZED, f"hold {hold.hold_id} is {hold.status.value.lower()}")
    return None


def _finish_hold(decision: Decision, hold: Hold, status: HoldStatus) -> None:
    key = hold_key(hold.account_id, hold.hold_id)
    hold.status = status
    decision.store.put(Table.HOLDS, key, hold)
    decision.store.delete(Table.HOLD_EXPIRIES, time_key(hold.expires_at_ms, key))
    decision.retain(Table.HOLDS, key)


# -- a capture to another shard, finished ---------------------------------------------------------


def settle_capture(decision: Decision, source: Account, outgoing: OutgoingTransfer) -> int:
    """The captured part was credited: the hold is captured and the rest of it released.
    Returns the change of `held`."""
    hold = _capturing_hold(decision, outgoing)
    remainder = hold.amount - outgoing.amount
    source.held -= remainder
    _finish_hold(decision, hold, HoldStatus.CAPTURED)
    return -remainder


def reopen_hold(decision: Decision, source: Account, outgoing: OutgoingTransfer) -> int:
    """A refused capture: the hold is open again, or expired if its time has passed.
    Returns the change of `held`."""
    hold = _capturing_hold(decision, outgoing)
    if decision.now < hold.expires_at_ms:
        source.held += outgoing.amount
        hold.status = HoldStatus.OPEN
        decision.store.put(Table.HOLDS, hold_key(hold.account_id, hold.hold_id), hold)
        return outgoing.amount
    remainder = hold.amount - outgoing.amount
    source.held -= remainder
    _finish_hold(decision, hold, HoldStatus.EXPIRED)
    return -remainder


def _capturing_hold(decision: Decision, outgoing: OutgoingTransfer) -> Hold:
    if outgoing.hold_key is None:
        raise InvariantViolation(f"capture {outgoing.transfer_id} in flight without the key of its hold")
    hold: Hold | None = decision.store.get(Table.HOLDS, outgoing.hold_key)
    if hold is None or hold.status is not HoldStatus.CAPTURING:
        found = "missing" if hold is None else hold.status.value
        raise InvariantViolation(f"hold {outgoing.hold_key} of capture {outgoing.transfer_id} in flight is {found}")
    return hold


# -- expiry ------------------------------------------------------------------------------------------


def expire(decision: Decision, key: str) -> None:
    """The hold's time has passed (a tick): release it, unless it is no longer open
    (CAPTURING holds end with their settle or refund)."""
    hold: Hold | None = decision.store.get(Table.HOLDS, key)
    if hold is None or hold.status is not HoldStatus.OPEN:
        return
    account = decision.account(hold.account_id)
    if account is None:
        raise InvariantViolation(f"account {hold.account_id} vanished with hold {hold.hold_id} open")
    account.held -= hold.amount
    _finish_hold(decision, hold, HoldStatus.EXPIRED)
    decision.emit(
        account,
        EventKind.HOLD_EXPIRED,
        held_change=-hold.amount,
        command_id=hold.command_id,
        dedup_id="",
        correlation_id=hold.hold_id,
        code=ErrorCode.HOLD_EXPIRED,
    )
