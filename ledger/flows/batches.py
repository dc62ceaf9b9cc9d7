"""Batch: 2 to 16 signed legs over distinct accounts, all or nothing.

When every leg's account lives on this shard the batch is decided here in one step
(`local_batch`). Otherwise it is a two-phase commit coordinated by this shard, the one
that owns the batch id:

1. the coordinator records a `BatchState` and sends a `BatchPrepare` to each leg's account;
2. each participant (`batch_prepare`) reserves its leg — a debit becomes `held`, a credit
   `pending_in` — and votes (`BatchVote`), or votes no with its rejection;
3. the coordinator (`batch_vote`) decides: commit once every vote is yes, abort on the
   first no, or on the deadline (`time_out`, from the clock); a `BatchDecision` goes to
   every leg;
4. each participant (`batch_decision`) applies or releases its reservation and
   acknowledges (`BatchAck`);
5. once every leg has acknowledged, the coordinator (`batch_ack`) publishes the final
   result: no partial batch is ever reported as committed.
"""

from __future__ import annotations

from ledger.accounts import Account, account_not_found, check_usable_for_credit, check_usable_for_debit
from ledger.commands import Batch
from ledger.decision import CommandIdentity, Decision
from ledger.errors import ErrorCode, InvariantViolation, Rejection
from ledger.events import CommandResult, EventKind, position
from ledger.keys import dedup_key, prepared_key, time_key
from ledger.legs import BatchAck, BatchDecision, BatchPrepare, BatchVote
from ledger.state import BatchPhase, BatchState, ExpiryEntry, PreparedLeg, PreparedStatus, Table


def batch(decision: Decision, command: Batch) -> CommandResult | None:
    if decision.store.get(Table.BATCHES, command.batch_id) is not None:
        return decision.result(
            command,
            rejection=Rejection(ErrorCode.ID_IN_USE, f"batch {command.batch_id} is still in progress"),
            reference_id=command.batch_id,
        )
    if all(decision.is_local(leg.account_id) for leg in command.legs):
        return _local_batch(decision, command)
    decision.store.put(
        Table.BATCHES,
        command.batch_id,
        BatchState(
            batch_id=command.batch_id,
            command_id=command.command_id,
            dedup_id=command.dedup_id,
            dedup_key=dedup_key(command.routing_key, command.dedup_id),
            legs=list(command.legs),
            phase=BatchPhase.PREPARING,
            voted=[False] * len(command.legs),
            acked=[False] * len(command.legs),
            positions=[],
            code=None,
            message="",
            deadline_ms=decision.now + decision.config.batch_timeout_ms,
            created_at_ms=decision.now,
        ),
    )
    decision.store.put(
        Table.BATCH_DEADLINES,
        time_key(decision.now + decision.config.batch_timeout_ms, command.batch_id),
        ExpiryEntry(key=command.batch_id),
    )
    for index, leg in enumerate(command.legs):
        decision.outcome.legs.append(
            BatchPrepare(
                batch_id=command.batch_id,
                leg_index=index,
                account_id=leg.account_id,
                amount=leg.amount,
                currency=leg.currency,
                command_id=command.command_id,
                dedup_id=command.dedup_id,
            )
        )
    return None


def _leg_account(decision: Decision, account_id: str, amount: int, currency: str) -> Account | Rejection:
    """The account of a leg, if it can take the leg (debited when amount < 0); else why not."""
    account = decision.account(account_id)
    if account is None:
        return account_not_found(account_id)
    if amount < 0:
        return check_usable_for_debit(account, currency, -amount) or account
    return check_usable_for_credit(account, currency, amount) or account


def _local_batch(decision: Decision, command: Batch) -> CommandResult:
    accounts: list[Account] = []
    for leg in command.legs:
        account = _leg_account(decision, leg.account_id, leg.amount, leg.currency)
        if isinstance(account, Rejection):
            return decision.result(command, rejection=account, reference_id=command.batch_id)
        accounts.append(account)
    positions = []
    for leg, account in zip(command.legs, accounts, strict=True):
        account.balance += leg.amount
        decision.emit(
            account,
            EventKind.BATCH_COMMITTED,
            amount=leg.amount,
            command_id=command.command_id,
            dedup_id=command.dedup_id,
            correlation_id=command.batch_id,
            metadata=command.metadata,
        )
        positions.append(position(account))
    return decision.result(command, positions=positions, reference_id=command.batch_id)


# -- participant ---------------------------------------------------------------------------------------


def batch_prepare(decision: Decision, leg: BatchPrepare) -> None:
    key = prepared_key(leg.batch_id, leg.account_id)
    if decision.store.get(Table.PREPARED, key) is not None:
        raise InvariantViolation(f"batch {leg.batch_id} prepared twice on {leg.account_id}")
    account = _leg_account(decision, leg.account_id, leg.amount, leg.currency)
    rejection = account if isinstance(account, Rejection) else None
    if not isinstance(account, Rejection):
        _reserve(decision, leg, account, key=key)
    decision.outcome.legs.append(
        BatchVote(
            batch_id=leg.batch_id,
            leg_index=leg.leg_index,
            account_id=leg.account_id,
            accepted=rejection is None,
            code=None if rejection is None else rejection.code,
            message="" if rejection is None else rejection.message,
        )
    )


def _reserve(decision: Decision, leg: BatchPrepare, account: Account, *, key: str) -> None:
    """A debit leg's amount is held, a credit leg's is pending in, until the decision."""
    if leg.amount < 0:
        account.held -= leg.amount
        status = PreparedStatus.HELD
    else:
        account.pending_in += leg.amount
        status = PreparedStatus.RESERVED
    decision.store.put(
        Table.PREPARED,
        key,
        PreparedLeg(
            batch_id=leg.batch_id,
            leg_index=leg.leg_index,
            account_id=leg.account_id,
            amount=leg.amount,
            status=status,
        ),
    )
    decision.emit(
        account,
        EventKind.BATCH_PREPARED,
        held_change=-leg.amount if leg.amount < 0 else 0,
        command_id=leg.command_id,
        dedup_id=leg.dedup_id,
        correlation_id=leg.batch_id,
    )


def batch_decision(decision: Decision, leg: BatchDecision) -> None:
    key = prepared_key(leg.batch_id, leg.account_id)
    prepared: PreparedLeg | None = decision.store.get(Table.PREPARED, key)
    account = decision.account(leg.account_id)
    if prepared is not None:  # None: this leg voted no, so there is nothing to apply or release
        if account is None:
            raise InvariantViolation(f"account {leg.account_id} vanished with batch {leg.batch_id} prepared on it")
        decision.store.delete(Table.PREPARED, key)
        debit = prepared.status is PreparedStatus.HELD
        if debit:
            account.held += prepared.amount  # amount < 0 for a debit leg
        else:
            account.pending_in -= prepared.amount
        if leg.commit:
            account.balance += prepared.amount
        decision.emit(
            account,
            EventKind.BATCH_COMMITTED if leg.commit else EventKind.BATCH_RELEASED,
            amount=prepared.amount if leg.commit else 0,
            held_change=prepared.amount if debit else 0,
            command_id=leg.command_id,
            dedup_id=leg.dedup_id,
            correlation_id=leg.batch_id,
            code=None if leg.commit else leg.code,
        )
    decision.outcome.legs.append(
        BatchAck(
            batch_id=leg.batch_id,
            leg_index=leg.leg_index,
            account_id=leg.account_id,
            position=position(account) if account is not None and prepared is not None else None,
        )
    )


# -- coordinator ---------------------------------------------------------------------------------------


def batch_vote(decision: Decision, vote: BatchVote) -> None:
    batch = _coordinated_batch(decision, vote.batch_id, "vote")
    if batch.voted[vote.leg_index]:
        raise InvariantViolation(f"leg {vote.leg_index} of batch {vote.batch_id} voted twice")
    batch.voted[vote.leg_index] = True
    if batch.phase is BatchPhase.PREPARING:
        if not vote.accepted:
            batch.code = vote.code
            batch.message = f"leg {vote.leg_index} ({vote.account_id}): {vote.message}"
            _decide(decision, batch, commit=False)
        elif all(batch.voted):
            _decide(decision, batch, commit=True)
    decision.store.put(Table.BATCHES, batch.batch_id, batch)


def time_out(decision: Decision, batch_id: str) -> None:
    """The batch's deadline passed (a tick): abort it if it is still preparing."""
    batch: BatchState | None = decision.store.get(Table.BATCHES, batch_id)
    if batch is not None and batch.phase is BatchPhase.PREPARING:
        batch.code = ErrorCode.BATCH_TIMEOUT
        batch.message = f"not every participant voted within {decision.config.batch_timeout_ms} ms"
        _decide(decision, batch, commit=False)
        decision.store.put(Table.BATCHES, batch.batch_id, batch)


def batch_ack(decision: Decision, ack: BatchAck) -> None:
    batch = _coordinated_batch(decision, ack.batch_id, "ack")
    if batch.acked[ack.leg_index]:
        raise InvariantViolation(f"leg {ack.leg_index} of batch {ack.batch_id} acknowledged twice")
    batch.acked[ack.leg_index] = True
    if ack.position is not None:
        batch.positions.append(ack.position)
    if not all(batch.acked):
        decision.store.put(Table.BATCHES, batch.batch_id, batch)
        return
    decision.store.delete(Table.BATCHES, batch.batch_id)
    committed = batch.phase is BatchPhase.COMMITTING
    order = {leg.account_id: index for index, leg in enumerate(batch.legs)}
    decision.finalize(
        batch.dedup_key,
        decision.result(
            CommandIdentity(command_id=batch.command_id, dedup_id=batch.dedup_id, command_type=Batch.__name__),
            rejection=None if committed else _abort_reason(batch),
            reference_id=batch.batch_id,
            positions=sorted(batch.positions, key=lambda p: order[p.account_id]) if committed else [],
        ),
    )


def _abort_reason(batch: BatchState) -> Rejection:
    if batch.code is None:
        raise InvariantViolation(f"batch {batch.batch_id} aborted without a code")
    return Rejection(batch.code, batch.message)


def _coordinated_batch(decision: Decision, batch_id: str, leg_name: str) -> BatchState:
    batch: BatchState | None = decision.store.get(Table.BATCHES, batch_id)
    if batch is None:
        raise InvariantViolation(f"{leg_name} for batch {batch_id}, which is not coordinated here")
    return batch


def _decide(decision: Decision, batch: BatchState, *, commit: bool) -> None:
    decision.store.delete(Table.BATCH_DEADLINES, time_key(batch.deadline_ms, batch.batch_id))
    batch.phase = BatchPhase.COMMITTING if commit else BatchPhase.ABORTING
    for index, leg in enumerate(batch.legs):
        decision.outcome.legs.append(
            BatchDecision(
                batch_id=batch.batch_id,
                leg_index=index,
                account_id=leg.account_id,
                commit=commit,
                command_id=batch.command_id,
                dedup_id=batch.dedup_id,
                code=batch.code,
            )
        )
