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

Legs that do not fit are refused, never applied. Each batch a coordinator starts has an
`incarnation` (a batch id may be reused once its batch ends), carried by every leg; a
participant's reservation is kept under the batch, the account and the incarnation, with
the account's sequence after it (`PreparedLeg.sequence`), which its vote reports and a
commit must name: so a replayed prepare can neither double a reservation nor be committed
by a replayed decision. A vote that reserved money the coordinator will never decide — for
a batch not here, another incarnation, an account not among the legs, or a leg already
acknowledged — is answered with an abort of that reservation alone (presumed abort: a
coordinator that does not know a batch has not committed it). Fields a v1 shard wrote
without (incarnation, sequence: 0) are trusted as v1 trusted them.
"""

from __future__ import annotations

from ledger.accounts import Account, account_not_found, check_usable_for_credit, check_usable_for_debit
from ledger.authorization import check_debit
from ledger.commands import Batch
from ledger.decision import CommandIdentity, Decision
from ledger.errors import ErrorCode, InvariantViolation, RefusalCode, Rejection
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
    decision.meta.batches_started += 1
    incarnation = decision.meta.batches_started
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
            incarnation=incarnation,
            sequences=[0] * len(command.legs),
            principal=command.principal,
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
                incarnation=incarnation,
                principal=command.principal,
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
    key = prepared_key(leg.batch_id, leg.account_id, leg.incarnation)
    if decision.store.get(Table.PREPARED, key) is not None:
        decision.refuse(
            RefusalCode.DUPLICATE_LEG_DELIVERY,
            f"batch {leg.batch_id} (incarnation {leg.incarnation}) is already prepared on {leg.account_id}",
        )
        return
    account: Account | Rejection | None = None
    if leg.amount < 0:  # the debit of a batch another shard took: the principal must own this account
        account = check_debit(leg.principal, decision.account(leg.account_id), leg.account_id)
    if account is None:
        account = _leg_account(decision, leg.account_id, leg.amount, leg.currency)
    rejection = account if isinstance(account, Rejection) else None
    sequence = 0
    if not isinstance(account, Rejection):
        _reserve(decision, leg, account, key=key)
        sequence = account.sequence
    decision.outcome.legs.append(
        BatchVote(
            batch_id=leg.batch_id,
            leg_index=leg.leg_index,
            account_id=leg.account_id,
            accepted=rejection is None,
            code=None if rejection is None else rejection.code,
            message="" if rejection is None else rejection.message,
            incarnation=leg.incarnation,
            sequence=sequence,
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
            incarnation=leg.incarnation,
            sequence=account.sequence + 1,  # that of the event below
            command_id=leg.command_id,
            dedup_id=leg.dedup_id,
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
    key = prepared_key(leg.batch_id, leg.account_id, leg.incarnation)
    prepared: PreparedLeg | None = decision.store.get(Table.PREPARED, key)
    mismatch = _decision_mismatch(leg, prepared)
    if mismatch is not None:
        code, reason = mismatch
        decision.refuse(code, f"BatchDecision for batch {leg.batch_id} on {leg.account_id}: {reason}")
        return
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
            command_id=prepared.command_id or leg.command_id,
            dedup_id=prepared.dedup_id or leg.dedup_id,
            correlation_id=leg.batch_id,
            code=None if leg.commit else leg.code,
        )
    decision.outcome.legs.append(
        BatchAck(
            batch_id=leg.batch_id,
            leg_index=leg.leg_index,
            account_id=leg.account_id,
            position=position(account) if account is not None and prepared is not None else None,
            incarnation=leg.incarnation,
        )
    )


def _decision_mismatch(leg: BatchDecision, prepared: PreparedLeg | None) -> tuple[RefusalCode, str] | None:
    """Why a decision cannot be applied here. An abort releases whatever its batch
    incarnation reserved on the account (or only acknowledges a no vote); a commit needs
    the very reservation its leg voted for."""
    if not leg.commit:
        return None
    if prepared is None:
        return RefusalCode.UNKNOWN_BATCH, f"a commit, but nothing is prepared for incarnation {leg.incarnation}"
    if prepared.leg_index != leg.leg_index:
        return RefusalCode.LEG_MISMATCH, f"a commit of leg {leg.leg_index}; leg {prepared.leg_index} is prepared"
    if leg.sequence and prepared.sequence and leg.sequence != prepared.sequence:
        return (
            RefusalCode.LEG_MISMATCH,
            f"a commit of the reservation at sequence {leg.sequence}; the one prepared is at {prepared.sequence}",
        )
    return None


# -- coordinator ---------------------------------------------------------------------------------------


def batch_vote(decision: Decision, vote: BatchVote) -> None:
    batch = _coordinated_batch(decision, vote)
    if batch is None:
        return
    index = vote.leg_index
    if batch.voted[index]:
        twice = f"leg {index} of batch {vote.batch_id} voted twice"
        _refuse_at_coordinator(decision, vote, batch, RefusalCode.DUPLICATE_LEG_DELIVERY, twice)
        return
    batch.voted[index] = True
    if vote.accepted and batch.sequences:
        batch.sequences[index] = vote.sequence
    if batch.phase is BatchPhase.PREPARING:
        if not vote.accepted:
            batch.code = vote.code
            batch.message = f"leg {index} ({vote.account_id}): {vote.message}"
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
    batch = _coordinated_batch(decision, ack)
    if batch is None:
        return
    if batch.phase is BatchPhase.PREPARING:
        decision.refuse(RefusalCode.LEG_MISMATCH, f"an ack for batch {ack.batch_id}, which is not decided yet")
        return
    if batch.acked[ack.leg_index]:
        decision.refuse(
            RefusalCode.DUPLICATE_LEG_DELIVERY, f"leg {ack.leg_index} of batch {ack.batch_id} acknowledged twice"
        )
        return
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
            CommandIdentity(
                command_id=batch.command_id,
                dedup_id=batch.dedup_id,
                command_type=Batch.__name__,
                principal=batch.principal,
            ),
            rejection=None if committed else _abort_reason(batch),
            reference_id=batch.batch_id,
            positions=sorted(batch.positions, key=lambda p: order[p.account_id]) if committed else [],
        ),
    )


def _abort_reason(batch: BatchState) -> Rejection:
    if batch.code is None:
        raise InvariantViolation(f"batch {batch.batch_id} aborted without a code")
    return Rejection(batch.code, batch.message)


def _coordinated_batch(decision: Decision, leg: BatchVote | BatchAck) -> BatchState | None:
    """The batch this vote or ack is for, if it is one this shard coordinates, of the same
    incarnation and with that leg; else the leg is refused and None returned."""
    name = type(leg).__name__
    batch: BatchState | None = decision.store.get(Table.BATCHES, leg.batch_id)
    if batch is None:
        unknown = f"{name} for batch {leg.batch_id}, which is not coordinated here"
        _refuse_at_coordinator(decision, leg, None, RefusalCode.UNKNOWN_BATCH, unknown)
        return None
    if leg.incarnation and leg.incarnation != batch.incarnation:
        _refuse_at_coordinator(
            decision,
            leg,
            batch,
            RefusalCode.LEG_MISMATCH,
            f"{name} for incarnation {leg.incarnation} of batch {leg.batch_id}; the one here is {batch.incarnation}",
        )
        return None
    if leg.leg_index >= len(batch.legs) or batch.legs[leg.leg_index].account_id != leg.account_id:
        _refuse_at_coordinator(
            decision,
            leg,
            batch,
            RefusalCode.LEG_MISMATCH,
            f"{name} for leg {leg.leg_index} on {leg.account_id}, which is not a leg of batch {leg.batch_id}",
        )
        return None
    return batch


def _refuse_at_coordinator(
    decision: Decision, leg: BatchVote | BatchAck, batch: BatchState | None, code: RefusalCode, reason: str
) -> None:
    """Refuse a vote or ack; a refused yes vote whose reservation nothing else will decide
    is answered with the abort of that reservation alone."""
    decision.refuse(code, reason)
    if not isinstance(leg, BatchVote) or not leg.accepted or not _undecided_otherwise(leg, batch):
        return
    decision.outcome.legs.append(
        BatchDecision(
            batch_id=leg.batch_id,
            leg_index=leg.leg_index,
            account_id=leg.account_id,
            commit=False,
            command_id="",
            dedup_id="",
            code=None,
            incarnation=leg.incarnation,
            sequence=leg.sequence,
        )
    )


def _undecided_otherwise(vote: BatchVote, batch: BatchState | None) -> bool:
    """Whether the reservation behind a refused yes vote is left to nobody. The batch's own
    decision reaches the key (batch, account, incarnation) of each of its legs, until that
    leg acknowledges: any other reservation is not the batch's, and aborting it is safe."""
    if batch is None or (vote.incarnation and vote.incarnation != batch.incarnation):
        return True
    leg_index = next((index for index, leg in enumerate(batch.legs) if leg.account_id == vote.account_id), None)
    return leg_index is None or batch.acked[leg_index]


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
                incarnation=batch.incarnation,
                sequence=batch.sequences[index] if batch.sequences else 0,
                principal=batch.principal,
            )
        )
