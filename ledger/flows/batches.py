"""Batch: 2 to BATCH_LEGS_MAX signed postings, all or nothing; an account may repeat.

An account's postings are applied in batch order, each against the balance the ones
before it left (a payment, then its fee, from one account). Each account is checked on its
own — its postings cannot touch another account — by `check_postings`, the same function
for a local batch and for a participant of a batch across shards, so both give the same
answer. A rejected batch reports one reason whatever order its votes arrive in: of the
accounts that cannot take their postings, the one whose code ranks first in
`BATCH_REJECTION_PRECEDENCE`, ties to the account of the lowest leg index.

When every leg's account lives on this shard the batch is decided here in one step
(`local_batch`). Otherwise it is a two-phase commit coordinated by this shard, the one
that owns the batch id:

1. the coordinator records a `BatchState` and sends a `BatchPrepare` to each leg's account;
2. each participant (`batch_prepare`) reserves its account's postings — how far they take
   the balance down at their lowest becomes `held`, how far up at their highest
   `pending_in` (`reservation`) — and votes (`BatchVote`), or votes no with its rejection;
3. the coordinator (`batch_vote`) decides: commit once every vote is yes, abort on the
   first no, or on the deadline (`time_out`, from the clock); a `BatchDecision` goes to
   every participant;
4. each participant (`batch_decision`) releases its reservation and, on a commit, applies
   its postings in order (one event each), and acknowledges (`BatchAck`);
5. once every participant has acknowledged, the coordinator (`batch_ack`) publishes the
   final result: no partial batch is ever reported as committed. Every vote arrives before
   its participant's ack (one producer, one partition), so by then every no vote has been
   counted, and the reason reported is the highest-precedence one of them all.

A participant is an account, named by the index of its first posting (`leg_index`); a
`BatchPrepare` carries the account's postings when it has more than one.

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

import dataclasses

from ledger.accounts import Account, account_not_found, check_usable_for_credit, check_usable_for_debit
from ledger.authorization import check_debit
from ledger.commands import Batch, BatchLeg
from ledger.decision import CommandIdentity, Decision
from ledger.errors import ErrorCode, InvariantViolation, RefusalCode, Rejection
from ledger.events import CommandResult, EventKind, position
from ledger.flows import intake
from ledger.keys import dedup_key, prepared_key, time_key
from ledger.legs import BatchAck, BatchDecision, BatchPrepare, BatchVote
from ledger.limits import AMOUNT_MAX, BATCH_LEGS_MAX
from ledger.state import BatchPhase, BatchState, ExpiryEntry, PreparedLeg, PreparedStatus, Table

# Which reason a rejected batch reports when several accounts cannot take their postings:
# the first of these (then any other code, in ErrorCode's order); ties go to the lowest leg
# index. The same for a local batch and one across shards, whatever order votes arrive in.
BATCH_REJECTION_PRECEDENCE: tuple[ErrorCode, ...] = (
    # First: a principal that may not debit an account learns nothing else about it, and the
    # taking shard refuses its own such debits before any vote (so a spread batch agrees).
    ErrorCode.FORBIDDEN,
    ErrorCode.ACCOUNT_NOT_FOUND,
    ErrorCode.ACCOUNT_CLOSED,
    ErrorCode.ACCOUNT_LOCKED,
    ErrorCode.CURRENCY_MISMATCH,
    ErrorCode.INSUFFICIENT_FUNDS,
    ErrorCode.LIMIT_EXCEEDED,
    ErrorCode.VELOCITY_LIMIT_EXCEEDED,
    ErrorCode.BATCH_TIMEOUT,
)
_ERROR_CODES = list(ErrorCode)


def rejection_rank(code: ErrorCode, *, leg_index: int) -> tuple[int, int]:
    """Lower ranks first: the precedence of the code, then the leg index."""
    if code in BATCH_REJECTION_PRECEDENCE:
        return BATCH_REJECTION_PRECEDENCE.index(code), leg_index
    return len(BATCH_REJECTION_PRECEDENCE) + _ERROR_CODES.index(code), leg_index


@dataclasses.dataclass(frozen=True, slots=True)
class Reservation:
    """What a participant reserves for an account's postings until the decision."""

    held: int  # how far below its starting balance the postings take it, at their lowest
    pending_in: int  # how far above, at their highest


def reservation(postings: list[int]) -> Reservation:
    running = lowest = highest = 0
    for amount in postings:
        running += amount
        lowest = min(lowest, running)
        highest = max(highest, running)
    return Reservation(held=-lowest, pending_in=highest)


def participants(legs: list[BatchLeg]) -> dict[str, list[int]]:
    """Each account of a batch and the indices of its postings, in order of first appearance."""
    indices: dict[str, list[int]] = {}
    for index, leg in enumerate(legs):
        indices.setdefault(leg.account_id, []).append(index)
    return indices


def check_postings(account: Account | None, *, account_id: str, currency: str, postings: list[int]) -> Rejection | None:
    """Whether an account can take its postings, in order, each against the balance the ones
    before it left (on a copy: the account is not changed); and hold what they reserve."""
    if account is None:
        return account_not_found(account_id)
    running = dataclasses.replace(account)
    for amount in postings:
        if amount < 0:
            rejection = check_usable_for_debit(running, currency, -amount)
        else:
            rejection = check_usable_for_credit(running, currency, amount)
        if rejection is not None:
            return rejection
        running.balance += amount
    needed = reservation(postings)
    if account.held + needed.held > AMOUNT_MAX or account.pending_in + needed.pending_in > AMOUNT_MAX:
        return Rejection(
            ErrorCode.LIMIT_EXCEEDED,
            f"the postings would take account {account_id}'s held or pending money past {AMOUNT_MAX}",
        )
    return None


def _leg_reason(leg_index: int, account_id: str, message: str) -> str:
    return f"leg {leg_index} ({account_id}): {message}"


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
    accounts = participants(command.legs)
    first_indices = {indices[0] for indices in accounts.values()}
    waits_for_nothing = [index not in first_indices for index in range(len(command.legs))]
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
            # A participant votes and acks under its first leg index; its other postings have nothing to wait for.
            voted=list(waits_for_nothing),
            acked=list(waits_for_nothing),
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
    for account_id, indices in accounts.items():
        first = command.legs[indices[0]]
        decision.outcome.legs.append(
            BatchPrepare(
                batch_id=command.batch_id,
                leg_index=indices[0],
                account_id=account_id,
                amount=first.amount,
                currency=first.currency,
                command_id=command.command_id,
                dedup_id=command.dedup_id,
                incarnation=incarnation,
                postings=[command.legs[index].amount for index in indices] if len(indices) > 1 else [],
                principal=command.principal,
            )
        )
    return None


def _local_batch(decision: Decision, command: Batch) -> CommandResult:
    accounts = participants(command.legs)
    found = {account_id: decision.account(account_id) for account_id in accounts}
    reasons: list[tuple[tuple[int, int], Rejection]] = []
    for account_id, indices in accounts.items():
        rejection = check_postings(
            found[account_id],
            account_id=account_id,
            currency=command.legs[indices[0]].currency,
            postings=[command.legs[index].amount for index in indices],
        )
        if rejection is not None:
            reason = Rejection(rejection.code, _leg_reason(indices[0], account_id, rejection.message))
            reasons.append((rejection_rank(rejection.code, leg_index=indices[0]), reason))
    if reasons:
        return decision.result(
            command, rejection=min(reasons, key=lambda ranked: ranked[0])[1], reference_id=command.batch_id
        )
    for leg in command.legs:
        account = found[leg.account_id]
        if account is None:
            raise InvariantViolation(f"account {leg.account_id} of batch {command.batch_id} vanished after its checks")
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
    positions = [position(account) for account in found.values() if account is not None]
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
    account = decision.account(leg.account_id)
    postings = leg.postings or [leg.amount]
    rejection: Rejection | None = None
    if any(amount < 0 for amount in postings):
        # A debit of a batch another shard took: the principal must own this account (the
        # taking shard checked the debits it holds; only this shard knows this one's owner).
        rejection = check_debit(leg.principal, account, leg.account_id)
        if rejection is not None:  # denied here, where the account's owner is known: on the audit trail
            intake.record_audit(
                decision,
                principal=leg.principal,
                action=Batch.__name__,
                account_id=leg.account_id,
                command_id=leg.command_id,
                rejection=rejection,
            )
    if rejection is None:
        rejection = check_postings(account, account_id=leg.account_id, currency=leg.currency, postings=postings)
    sequence = 0
    if rejection is None and account is not None:
        _reserve(decision, leg, account, key=key, postings=postings)
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


def _reserve(decision: Decision, leg: BatchPrepare, account: Account, *, key: str, postings: list[int]) -> None:
    """What the postings need is reserved until the decision: how far down they take the
    balance is held, how far up is pending in."""
    needed = reservation(postings)
    account.held += needed.held
    account.pending_in += needed.pending_in
    decision.store.put(
        Table.PREPARED,
        key,
        PreparedLeg(
            batch_id=leg.batch_id,
            leg_index=leg.leg_index,
            account_id=leg.account_id,
            amount=leg.amount,
            status=PreparedStatus.HELD if needed.held > 0 else PreparedStatus.RESERVED,
            incarnation=leg.incarnation,
            sequence=account.sequence + 1,  # that of the event below
            command_id=leg.command_id,
            dedup_id=leg.dedup_id,
            postings=list(leg.postings),
        ),
    )
    decision.emit(
        account,
        EventKind.BATCH_PREPARED,
        held_change=needed.held,
        command_id=leg.command_id,
        dedup_id=leg.dedup_id,
        correlation_id=leg.batch_id,
    )


def prepared_postings(prepared: PreparedLeg) -> list[int]:
    """The postings a reservation is for (a v1 one, and one of a single posting: its amount)."""
    return prepared.postings or [prepared.amount]


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
        _release_and_apply(decision, leg, prepared, account)
    decision.outcome.legs.append(
        BatchAck(
            batch_id=leg.batch_id,
            leg_index=leg.leg_index,
            account_id=leg.account_id,
            position=position(account) if account is not None and prepared is not None else None,
            incarnation=leg.incarnation,
        )
    )


def _release_and_apply(decision: Decision, leg: BatchDecision, prepared: PreparedLeg, account: Account) -> None:
    """Release the reservation; on a commit apply the postings in order, one event each (the
    reservation released with the first), else one release event."""
    postings = prepared_postings(prepared)
    reserved = reservation(postings)
    account.held -= reserved.held
    account.pending_in -= reserved.pending_in
    command_id, dedup_id = prepared.command_id or leg.command_id, prepared.dedup_id or leg.dedup_id
    if not leg.commit:
        decision.emit(
            account,
            EventKind.BATCH_RELEASED,
            held_change=-reserved.held,
            command_id=command_id,
            dedup_id=dedup_id,
            correlation_id=leg.batch_id,
            code=leg.code,
        )
        return
    for number, amount in enumerate(postings):
        account.balance += amount
        decision.emit(
            account,
            EventKind.BATCH_COMMITTED,
            amount=amount,
            held_change=-reserved.held if number == 0 else 0,
            command_id=command_id,
            dedup_id=dedup_id,
            correlation_id=leg.batch_id,
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
    if not vote.accepted:
        _keep_reason(batch, vote)  # also after the abort: every no vote counts for the result
    if batch.phase is BatchPhase.PREPARING:
        if not vote.accepted:
            _decide(decision, batch, commit=False)
        elif all(batch.voted):
            _decide(decision, batch, commit=True)
    decision.store.put(Table.BATCHES, batch.batch_id, batch)


def _keep_reason(batch: BatchState, vote: BatchVote) -> None:
    """The batch's reason is the no vote of the highest precedence so far (a timeout ranks last)."""
    if vote.code is None:
        raise InvariantViolation(f"a no vote for batch {batch.batch_id} without a code passed the leg checks")
    rank = rejection_rank(vote.code, leg_index=vote.leg_index)
    if batch.code is None or rank < rejection_rank(batch.code, leg_index=_reason_index(batch)):
        batch.code = vote.code
        batch.message = _leg_reason(vote.leg_index, vote.account_id, vote.message)
        batch.code_leg_index = vote.leg_index


def _reason_index(batch: BatchState) -> int:
    return BATCH_LEGS_MAX if batch.code_leg_index < 0 else batch.code_leg_index


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
    order = {account_id: indices[0] for account_id, indices in participants(batch.legs).items()}
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
    first_index = next((index for index, each in enumerate(batch.legs) if each.account_id == leg.account_id), None)
    if first_index != leg.leg_index:  # a participant is named by its account's first leg
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
    for account_id, indices in participants(batch.legs).items():
        index = indices[0]
        decision.outcome.legs.append(
            BatchDecision(
                batch_id=batch.batch_id,
                leg_index=index,
                account_id=account_id,
                commit=commit,
                command_id=batch.command_id,
                dedup_id=batch.dedup_id,
                code=batch.code,
                incarnation=batch.incarnation,
                sequence=batch.sequences[index] if batch.sequences else 0,
                principal=batch.principal,
            )
        )
