"""SetVelocityRules, and the velocity check of an outgoing payment (ledger/velocity.py).

`outgoing_rejection` is called by the flows that pay out of an account (withdraw, transfer)
after their funds and limits checks: a payment past a rule is rejected (and, with
`freeze_on_trip`, the account locked by a LOCKED event of the rejected command);
`count_outgoing` records an accepted one.
"""

from __future__ import annotations

from ledger import velocity
from ledger.accounts import Account, AccountStatus, account_not_found, check_currency, check_usable
from ledger.commands import MutatingCommand, SetVelocityRules
from ledger.decision import Decision
from ledger.errors import Rejection
from ledger.events import CommandResult, EventKind, position
from ledger.state import Table
from ledger.velocity import VelocityState


def set_velocity_rules(decision: Decision, command: SetVelocityRules) -> CommandResult:
    account = decision.account(command.account_id)
    if account is None:
        return decision.result(command, rejection=account_not_found(command.account_id))
    rejection = _check_settable(account) or check_currency(account, command.currency)
    if rejection is not None:
        return decision.result(command, rejection=rejection)
    limits = (command.hour_amount_max, command.hour_count_max, command.day_amount_max, command.day_count_max)
    if not any(limits):
        decision.store.delete(Table.VELOCITY, account.account_id)
        return decision.result(command, positions=[position(account)], message="velocity rules removed")
    state: VelocityState | None = decision.store.get(Table.VELOCITY, account.account_id)
    decision.store.put(
        Table.VELOCITY,
        account.account_id,
        VelocityState(
            account_id=account.account_id,
            hour_amount_max=command.hour_amount_max,
            hour_count_max=command.hour_count_max,
            day_amount_max=command.day_amount_max,
            day_count_max=command.day_count_max,
            freeze_on_trip=command.freeze_on_trip,
            buckets=[] if state is None else state.buckets,  # what was paid out still counts
        ),
    )
    return decision.result(command, positions=[position(account)], message="velocity rules set")


def _check_settable(account: Account) -> Rejection | None:
    """Rules may be set on an active or a locked account, not a closed one."""
    return check_usable(account) if account.status is AccountStatus.CLOSED else None


def outgoing_rejection(
    decision: Decision, account: Account, *, amount: int, command: MutatingCommand
) -> Rejection | None:
    """Whether paying `amount` out of the account now passes one of its rules; if it does
    and the rules say so, the account is locked."""
    state: VelocityState | None = decision.store.get(Table.VELOCITY, account.account_id)
    rejection = velocity.check(state, amount=amount, now_ms=decision.now)
    if rejection is not None and state is not None and state.freeze_on_trip and account.status is AccountStatus.ACTIVE:
        account.status = AccountStatus.LOCKED
        decision.emit(
            account,
            EventKind.LOCKED,
            command_id=command.command_id,
            dedup_id=command.dedup_id,
            code=rejection.code,
        )
    return rejection


def count_outgoing(decision: Decision, account_id: str, *, amount: int) -> None:
    state: VelocityState | None = decision.store.get(Table.VELOCITY, account_id)
    if state is not None:
        velocity.record(state, amount=amount, now_ms=decision.now)
        decision.store.put(Table.VELOCITY, account_id, state)
