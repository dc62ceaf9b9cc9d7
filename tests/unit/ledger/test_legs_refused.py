"""Legs that do not fit the shard's state are refused, never applied and never a crash.

A leg comes from the internal legs topic, where a replay (broken delivery, an operator
re-injecting a range) or a forgery (anyone with write access) can put anything. Each
refusal is a value (`Outcome.refused`, a `RefusalCode`); the refused leg changes nothing
(but the clock), and the only legs it may send are the clean-ups that make a forged or
replayed leg harmless: a refund its source checks, or the abort of a reservation that no
batch will decide.

The table has a row per way a leg can be refused (every `RefusalCode` has one); the
scenarios after it deliver duplicates on purpose — within the retention window, after it,
and against a new flow that reuses the old one's id — and check that money is credited,
settled, reserved and committed exactly once.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import pytest

from ledger.commands import Command
from ledger.errors import ErrorCode, RefusalCode
from ledger.events import EventKind, Position, ResultStatus
from ledger.keys import prepared_key
from ledger.legs import (
    BatchAck,
    BatchDecision,
    BatchPrepare,
    BatchVote,
    CreditLeg,
    Flow,
    Leg,
    RefundLeg,
    SettleLeg,
)
from ledger.limits import LEG_MESSAGE_LENGTH_MAX
from ledger.shard import Outcome, ShardConfig
from ledger.state import Table
from tests.principals import TESTER
from tests.unit.ledger.cluster import Cluster, check_one_result_each, check_quiescent, check_state
from tests.unit.ledger.test_error_codes import (
    accept_all,
    batch,
    deposit,
    forged_credit,
    lock,
    open_,
    same_dedup,
    transfer,
    unlock,
)

R = RefusalCode
E = ErrorCode
WINDOW_MS = 10_000

# -- what every refusal must (not) do --------------------------------------------------------------------------

# Tables a refused leg must leave as they were (the retention window's tables move with time on
# every input, so they are left out: no row advances the clock past a window).
UNTOUCHED = (
    Table.ACCOUNTS,
    Table.HOLDS,
    Table.OUTGOING,
    Table.TRANSFERS,
    Table.PREPARED,
    Table.BATCHES,
    Table.CREDIT_MARKS,
    Table.DEDUP,
    Table.COMMANDS,
)


def snapshot(cluster: Cluster) -> dict[Table, Any]:
    return {table: cluster.rows(table) for table in UNTOUCHED}


def deliver(cluster: Cluster, leg: Leg, *, shard: int | None = None) -> Outcome:
    """Deliver a leg no shard sent now (forged, or a copy of one already delivered)."""
    return cluster.handle(cluster.route(leg.routing_key) if shard is None else shard, leg, cluster.now, tainted=True)


def refused(cluster: Cluster, leg: Leg, code: RefusalCode, *, shard: int | None = None) -> Outcome:
    """Deliver `leg`; it must be refused with `code` and change nothing."""
    before = snapshot(cluster)
    outcome = deliver(cluster, leg, shard=shard)
    assert outcome.refused is not None and outcome.refused.code is code, outcome.refused
    assert outcome.refused.reason
    assert outcome.events == [] and outcome.results == [], outcome
    assert snapshot(cluster) == before, "a refused leg changed the state"
    return outcome


# -- building legs of real flows ---------------------------------------------------------------------------------


def funded(cluster: Cluster) -> None:
    accept_all(cluster, open_("A@0"), open_("B@0"), open_("X@1"), open_("Y@2"), deposit("A@0", 100))


def next_leg(cluster: Cluster, shard: int) -> Leg:
    """The leg waiting at the head of `shard`'s queue."""
    return cluster.queues[shard][0].leg


def credit_in_flight(cluster: Cluster, amount: int = 10) -> CreditLeg:
    """A transfer A@0 -> X@1 debited, its CreditLeg not delivered yet."""
    funded(cluster)
    cluster.submit(transfer("A@0", "X@1", amount))
    leg = next_leg(cluster, 1)
    assert isinstance(leg, CreditLeg)
    return leg


def settle_in_flight(cluster: Cluster) -> SettleLeg:
    credit_in_flight(cluster)
    cluster.deliver(1)
    leg = next_leg(cluster, 0)
    assert isinstance(leg, SettleLeg)
    return leg


def refund_in_flight(cluster: Cluster) -> RefundLeg:
    funded(cluster)
    cluster.submit(transfer("A@0", "Z@1", 10))  # Z does not exist: refunded
    cluster.deliver(1)
    leg = next_leg(cluster, 0)
    assert isinstance(leg, RefundLeg)
    return leg


def batch_preparing(cluster: Cluster) -> list[BatchPrepare]:
    """A batch coordinated by shard 2 over A@0 and X@1, its prepares not delivered yet."""
    funded(cluster)
    cluster.submit(batch(("A@0", -30), ("X@1", 30), batch_id="b1@2"))
    prepares = [queued.leg for queue in cluster.queues for queued in queue]
    assert all(isinstance(leg, BatchPrepare) for leg in prepares) and len(prepares) == 2
    return prepares  # type: ignore[return-value]


def votes_in_flight(cluster: Cluster) -> list[BatchVote]:
    batch_preparing(cluster)
    cluster.deliver(0)
    cluster.deliver(1)
    votes = [queued.leg for queued in cluster.queues[2]]
    assert all(isinstance(vote, BatchVote) and vote.accepted for vote in votes) and len(votes) == 2
    return votes  # type: ignore[return-value]


def decided(cluster: Cluster) -> list[BatchDecision]:
    """The batch's votes delivered: commit decisions on their way to A@0 and X@1."""
    votes_in_flight(cluster)
    cluster.deliver(2)
    cluster.deliver(2)
    decisions = [queued.leg for queue in cluster.queues[:2] for queued in queue]
    assert all(isinstance(leg, BatchDecision) and leg.commit for leg in decisions) and len(decisions) == 2
    return decisions  # type: ignore[return-value]


def acks_in_flight(cluster: Cluster) -> list[BatchAck]:
    decided(cluster)
    cluster.deliver(0)
    cluster.deliver(1)
    acks = [queued.leg for queued in cluster.queues[2]]
    assert all(isinstance(ack, BatchAck) for ack in acks) and len(acks) == 2
    return acks  # type: ignore[return-value]


def copy(leg: Any, **changes: Any) -> Any:
    return dataclasses.replace(leg, **changes)


# -- the table -------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    name: str
    leg: Callable[[Cluster], Leg]  # sets the cluster up and returns the leg to deliver
    code: RefusalCode
    answers: tuple[type, ...] = ()  # the clean-up legs the refusal sends
    shard: int | None = None  # where it is delivered; its routing key's shard by default


def _delivered(make: Callable[[Cluster], Leg], shard: int) -> Callable[[Cluster], Leg]:
    """The leg `make` returns, once delivered: the row delivers it again."""

    def again(cluster: Cluster) -> Leg:
        leg = make(cluster)
        cluster.deliver(shard)
        return leg

    return again


def _rows() -> list[Row]:
    rows: list[Row] = []

    def row(name: str, leg: Callable[[Cluster], Leg], code: RefusalCode, **options: Any) -> None:
        rows.append(Row(name, leg, code, **options))

    def forged(leg: Leg) -> Callable[[Cluster], Leg]:
        def setup(cluster: Cluster) -> Leg:
            funded(cluster)
            return leg

        return setup

    row(
        "a credit delivered to a partition that does not own its account",
        forged(forged_credit()),
        R.MISROUTED_LEG,
        shard=0,
    )

    row("a credit of a negative amount", forged(forged_credit(amount=-10)), R.INVALID_LEG)
    row("a credit in no currency", forged(forged_credit(currency="XXX")), R.INVALID_LEG)
    row("a credit whose flow is not its command's", forged(forged_credit(command_type="Deposit")), R.INVALID_LEG)
    row("a credit whose id is not its command's", forged(forged_credit(command_id="other")), R.INVALID_LEG)
    row(
        "a reversal that reverses nothing",
        forged(forged_credit(flow=Flow.REVERSAL, command_type="ReverseTransfer")),
        R.INVALID_LEG,
    )
    row(
        "a credit whose source position is another account",
        forged(forged_credit(source_position=Position(account_id="B@0", sequence=3, balance=0, available=0))),
        R.INVALID_LEG,
    )
    row("a credit with a malformed id", forged(forged_credit(transfer_id="a|b", command_id="a|b")), R.INVALID_LEG)
    row(
        "a credit from an account of the same partition",
        forged(
            forged_credit(
                from_account_id="B@1", source_position=Position(account_id="B@1", sequence=3, balance=0, available=0)
            )
        ),
        R.INVALID_LEG,
    )
    row(
        "a settle of a negative source sequence", lambda c: copy(settle_in_flight(c), source_sequence=-1), R.INVALID_LEG
    )
    row(
        "a refund with an endless message",
        lambda c: copy(refund_in_flight(c), message="x" * (LEG_MESSAGE_LENGTH_MAX + 1)),
        R.INVALID_LEG,
    )
    row("a prepare of leg 99", lambda c: copy(batch_preparing(c)[0], leg_index=99), R.INVALID_LEG)
    row("a prepare of a negative leg", lambda c: copy(batch_preparing(c)[0], leg_index=-1), R.INVALID_LEG)
    row("a prepare of nothing", lambda c: copy(batch_preparing(c)[0], amount=0), R.INVALID_LEG)
    row("a yes vote with a code", lambda c: copy(votes_in_flight(c)[0], code=E.LIMIT_EXCEEDED), R.INVALID_LEG)
    row("a no vote without a code", lambda c: copy(votes_in_flight(c)[0], accepted=False), R.INVALID_LEG)
    row("a commit with a code", lambda c: copy(decided(c)[0], code=E.BATCH_TIMEOUT), R.INVALID_LEG)
    row(
        "an ack with another account's position",
        lambda c: copy(acks_in_flight(c)[0], position=Position(account_id="Y@2", sequence=1, balance=0, available=0)),
        R.INVALID_LEG,
    )
    row("a vote of a negative incarnation", lambda c: copy(votes_in_flight(c)[0], incarnation=-2), R.INVALID_LEG)

    row("a settle of a flow never started", lambda c: copy(settle_in_flight(c), transfer_id="never"), R.UNKNOWN_FLOW)
    row("a refund of a flow never started", lambda c: copy(refund_in_flight(c), transfer_id="never"), R.UNKNOWN_FLOW)
    row("a settle delivered twice", _delivered(settle_in_flight, 0), R.UNKNOWN_FLOW)
    row("a refund delivered twice", _delivered(refund_in_flight, 0), R.UNKNOWN_FLOW)

    row(
        "a no vote for a batch never started",
        lambda c: copy(votes_in_flight(c)[0], batch_id="never@2", accepted=False, code=E.LIMIT_EXCEEDED),
        R.UNKNOWN_BATCH,
    )
    row(
        "a yes vote for a batch never started: its reservation is aborted",
        lambda c: copy(votes_in_flight(c)[0], batch_id="never@2"),
        R.UNKNOWN_BATCH,
        answers=(BatchDecision,),
    )
    row("an ack for a batch never started", lambda c: copy(acks_in_flight(c)[0], batch_id="never@2"), R.UNKNOWN_BATCH)
    row("a commit with nothing prepared", lambda c: copy(decided(c)[0], batch_id="never@2"), R.UNKNOWN_BATCH)

    row("a settle of another amount", lambda c: copy(settle_in_flight(c), amount=11), R.LEG_MISMATCH)
    row("a settle to another account", lambda c: copy(settle_in_flight(c), to_account_id="Y@2"), R.LEG_MISMATCH)
    row("a settle of another flow kind", lambda c: copy(settle_in_flight(c), flow=Flow.CAPTURE), R.LEG_MISMATCH)
    row("a settle of an earlier debit", lambda c: copy(settle_in_flight(c), source_sequence=1), R.LEG_MISMATCH)
    row(
        "a settle carrying a rejection",
        lambda c: copy((s := settle_in_flight(c)), result=copy(s.result, status=ResultStatus.REJECTED)),
        R.LEG_MISMATCH,
    )
    row(
        "a settle carrying another command's result",
        lambda c: copy((s := settle_in_flight(c)), result=copy(s.result, command_id="other")),
        R.LEG_MISMATCH,
    )
    row("a refund of another amount", lambda c: copy(refund_in_flight(c), amount=9), R.LEG_MISMATCH)
    row("a refund of an earlier debit", lambda c: copy(refund_in_flight(c), source_sequence=1), R.LEG_MISMATCH)
    row("a vote of a leg the batch does not have", lambda c: copy(votes_in_flight(c)[0], leg_index=5), R.LEG_MISMATCH)
    row(
        "a yes vote for an account not in the batch: its reservation is aborted",
        lambda c: copy(votes_in_flight(c)[0], account_id="Y@2"),
        R.LEG_MISMATCH,
        answers=(BatchDecision,),
    )
    row(
        "a vote of another incarnation: its reservation is aborted",
        lambda c: copy(votes_in_flight(c)[0], incarnation=7),
        R.LEG_MISMATCH,
        answers=(BatchDecision,),
    )
    row(
        "an ack before the batch is decided",
        lambda c: BatchAck(
            batch_id="b1@2", leg_index=0, account_id="A@0", position=None, incarnation=votes_in_flight(c)[0].incarnation
        ),
        R.LEG_MISMATCH,
    )
    row("a commit of another reservation", lambda c: copy(decided(c)[0], sequence=1), R.LEG_MISMATCH)
    row("a commit of another leg", lambda c: copy(decided(c)[0], leg_index=1), R.LEG_MISMATCH)

    row("a credit delivered twice", _delivered(credit_in_flight, 1), R.DUPLICATE_LEG_DELIVERY)
    row("a prepare delivered twice", _delivered(lambda c: batch_preparing(c)[0], 0), R.DUPLICATE_LEG_DELIVERY)
    row("a vote delivered twice", _delivered(lambda c: votes_in_flight(c)[0], 2), R.DUPLICATE_LEG_DELIVERY)
    row("an ack delivered twice", _delivered(lambda c: acks_in_flight(c)[0], 2), R.DUPLICATE_LEG_DELIVERY)
    return rows


ROWS = _rows()


def test_every_refusal_code_has_a_row() -> None:
    assert {row.code for row in ROWS} == set(RefusalCode)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_refused(row: Row) -> None:
    cluster = Cluster(3)
    leg = row.leg(cluster)
    outcome = refused(cluster, leg, row.code, shard=row.shard)
    assert tuple(type(answer) for answer in outcome.legs) == row.answers, outcome.legs
    cluster.drain()  # the legs of the real flows finish as if nothing had happened
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)
    check_one_result_each(cluster, settled=True)


# -- duplicates, delivered on purpose ---------------------------------------------------------------------------------


def test_a_forged_settle_no_longer_stops_the_partition() -> None:
    """Issue 11: a SettleLeg for a flow that never existed raised InvariantViolation, so the
    worker stopped on it, restarted, consumed it again: a crash-looping partition."""
    cluster = Cluster(3)
    funded(cluster)
    forged = SettleLeg(
        transfer_id="never",
        flow=Flow.TRANSFER,
        from_account_id="A@0",
        to_account_id="X@1",
        amount=10,
        result=cluster.run(deposit("A@0", 1)),
    )
    refused(cluster, forged, R.UNKNOWN_FLOW)
    assert cluster.run(deposit("A@0", 1)).status is ResultStatus.ACCEPTED  # and the partition goes on


def test_a_credit_delivered_twice_within_the_window_is_credited_once() -> None:
    cluster = Cluster(3)
    credit = credit_in_flight(cluster)
    cluster.deliver(1)
    outcome = refused(cluster, credit, R.DUPLICATE_LEG_DELIVERY)
    assert outcome.legs == [], "credited here: its settle went back with the first delivery"
    cluster.drain()
    assert (cluster.balance("A@0"), cluster.balance("X@1")) == (90, 10)
    assert cluster.result(credit.command_id).status is ResultStatus.ACCEPTED
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)


def test_a_credit_replayed_after_its_record_left_the_window_is_not_credited_again() -> None:
    """Issue 13: the destination used to recognise a second delivery by the TransferRecord,
    which leaves with the retention window; after it the leg would have been credited again."""
    cluster = Cluster(3, config=ShardConfig(retention_ms=WINDOW_MS))
    credit = credit_in_flight(cluster)
    cluster.drain()
    cluster.advance(WINDOW_MS)
    assert cluster.stores[1].get(Table.TRANSFERS, credit.transfer_id) is None, "the record has left the window"

    outcome = refused(cluster, credit, R.DUPLICATE_LEG_DELIVERY)
    (refund,) = outcome.legs
    assert isinstance(refund, RefundLeg) and refund.code is E.CREDIT_OUT_OF_ORDER
    assert refund.source_sequence == credit.source_position.sequence
    refused(cluster, refund, R.UNKNOWN_FLOW)  # the source checks it: that flow ended long ago
    cluster.queues[0].clear()

    assert (cluster.balance("A@0"), cluster.balance("X@1")) == (90, 10)
    later = cluster.run(transfer("A@0", "X@1", 5))  # the source's next credit is above the mark
    assert later.status is ResultStatus.ACCEPTED and cluster.balance("X@1") == 15
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)


def test_a_refused_credit_replayed_later_is_not_credited_either() -> None:
    """The destination refused the credit (the account was locked) and the source refunded
    it; unlocked since, a replay must not credit money the source already has back."""
    cluster = Cluster(3)
    funded(cluster)
    accept_all(cluster, open_("L@1"), lock("L@1"))
    sent = transfer("A@0", "L@1", 10)
    cluster.submit(sent)
    credit = next_leg(cluster, 1)
    assert isinstance(credit, CreditLeg)
    cluster.drain()
    assert cluster.result(sent.command_id).code is E.ACCOUNT_LOCKED
    accept_all(cluster, unlock("L@1"))

    outcome = refused(cluster, credit, R.DUPLICATE_LEG_DELIVERY)
    (refund,) = outcome.legs
    refused(cluster, refund, R.UNKNOWN_FLOW)
    cluster.queues[0].clear()
    assert (cluster.balance("A@0"), cluster.balance("L@1")) == (100, 0)


def test_stale_legs_of_a_reused_transfer_id_leave_the_new_flow_alone() -> None:
    """After the window a client reuses a transfer's command id for the same transfer again.
    A replay of the first flow's credit, settle or refund, delivered while the second flow is
    in flight, must not credit, settle or refund the second one."""
    cluster = Cluster(3, config=ShardConfig(retention_ms=WINDOW_MS))
    funded(cluster)
    first = transfer("A@0", "X@1", 10, command_id="pay-1")
    cluster.submit(first)
    old_credit = next_leg(cluster, 1)
    cluster.deliver(1)
    old_settle = next_leg(cluster, 0)
    assert isinstance(old_credit, CreditLeg) and isinstance(old_settle, SettleLeg)
    cluster.drain()
    cluster.advance(WINDOW_MS)

    second = transfer("A@0", "X@1", 10, command_id="pay-1")  # another dedup id, the same command id
    cluster.submit(second)
    assert cluster.stores[0].get(Table.OUTGOING, "pay-1") is not None

    outcome = refused(cluster, old_credit, R.DUPLICATE_LEG_DELIVERY)
    (stale_refund,) = outcome.legs
    refused(cluster, stale_refund, R.LEG_MISMATCH)  # the flow in flight was debited at another sequence
    refused(cluster, old_settle, R.LEG_MISMATCH)
    cluster.queues[0].clear()

    cluster.drain()  # the second flow's own credit and settle
    assert (cluster.balance("A@0"), cluster.balance("X@1")) == (80, 20)
    assert [r.status for r in cluster.results_for("pay-1")] == [ResultStatus.ACCEPTED, ResultStatus.ACCEPTED]
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)


def test_every_leg_of_a_transfer_delivered_twice() -> None:
    """Credit, settle and refund, each delivered a second time right after the first:
    money moves once, and the flows end as if each had come once."""
    cluster = Cluster(3)
    funded(cluster)
    accept_all(cluster, open_("L@1"), lock("L@1"))
    credited, refunded = transfer("A@0", "X@1", 10), transfer("A@0", "L@1", 20)
    for command in (credited, refunded):
        cluster.submit(command)
    while cluster.pending():
        shard = next(index for index, queue in enumerate(cluster.queues) if queue)
        leg = next_leg(cluster, shard)
        cluster.deliver(shard)
        again = deliver(cluster, leg)
        assert again.refused is not None and again.events == [] and again.results == [], again
    assert (cluster.balance("A@0"), cluster.balance("X@1"), cluster.balance("L@1")) == (90, 10, 0)
    assert cluster.result(credited.command_id).status is ResultStatus.ACCEPTED
    assert cluster.result(refunded.command_id).code is E.ACCOUNT_LOCKED
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)


def _batch_legs_in_order(cluster: Cluster, command: Command) -> list[tuple[int, Leg]]:
    """Run a command to its end, one leg at a time; return every leg with the shard it went to."""
    cluster.submit(command)
    delivered = []
    while cluster.pending():
        shard = next(index for index, queue in enumerate(cluster.queues) if queue)
        delivered.append((shard, next_leg(cluster, shard)))
        cluster.deliver(shard)
    return delivered


def test_every_leg_of_a_finished_batch_replayed_in_order_changes_nothing() -> None:
    """An operator re-injects a range of the legs topic: every prepare, vote, decision and ack
    of a committed batch comes again, in their order. The prepare reserves again, but its
    replayed commit cannot commit that new reservation (it names the first one's sequence),
    and the coordinator, which has finished the batch, aborts it (presumed abort)."""
    cluster = Cluster(3)
    funded(cluster)
    moved = batch(("A@0", -30), ("X@1", 30), batch_id="b1@2")
    legs = _batch_legs_in_order(cluster, moved)
    assert cluster.result(moved.command_id).status is ResultStatus.ACCEPTED
    assert (cluster.balance("A@0"), cluster.balance("X@1")) == (70, 30)
    for shard, leg in legs:
        deliver(cluster, leg, shard=shard)
    cluster.drain()
    assert (cluster.balance("A@0"), cluster.balance("X@1")) == (70, 30)
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)
    check_one_result_each(cluster, settled=True)


def test_legs_of_an_earlier_batch_with_the_same_id_do_not_touch_the_next_one() -> None:
    """A batch id is free again once its batch ends. The legs of the first batch, replayed
    while a second one with that id is under way, belong to another incarnation."""
    cluster = Cluster(3)
    funded(cluster)
    first = batch(("A@0", -30), ("X@1", 30), batch_id="b1@2")
    old = _batch_legs_in_order(cluster, first)
    second = batch(("A@0", -20), ("X@1", 20), batch_id="b1@2")
    cluster.submit(second)
    rng = random.Random(2)
    for shard, leg in old:  # interleaved with the second batch's own legs
        deliver(cluster, leg, shard=shard)
        cluster.deliver_any(rng)
    cluster.drain()
    assert cluster.result(second.command_id).status is ResultStatus.ACCEPTED
    assert (cluster.balance("A@0"), cluster.balance("X@1")) == (50, 50)
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)


def test_a_forged_prepare_reserves_only_until_the_coordinator_answers() -> None:
    """A prepare for a batch no coordinator has: the participant reserves and votes, the
    coordinator knows no such batch, so it has not committed it, and aborts the reservation."""
    cluster = Cluster(3)
    funded(cluster)
    forged = BatchPrepare(
        batch_id="never@2",
        leg_index=0,
        account_id="A@0",
        amount=-60,
        currency="USD",
        command_id="forged",
        dedup_id="forged",
        incarnation=9,
        principal=TESTER,  # a forger who names the account's owner (anonymous: refused, FORBIDDEN)
    )
    outcome = deliver(cluster, forged)
    assert outcome.refused is None and cluster.account("A@0").held == 60  # type: ignore[union-attr]
    assert cluster.stores[0].get(Table.PREPARED, prepared_key("never@2", "A@0", 9)) is not None
    cluster.drain()
    account = cluster.account("A@0")
    assert account is not None and (account.balance, account.held) == (100, 0)
    released = cluster.events[-1]
    assert released.kind is EventKind.BATCH_RELEASED and released.command_id == "forged"
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)


def test_a_duplicate_of_an_in_flight_transfer_is_still_answered_once() -> None:
    """Duplicates of commands and duplicates of legs together."""
    cluster = Cluster(3)
    credit = credit_in_flight(cluster)
    duplicate = same_dedup(transfer("A@0", "X@1", 10, dedup_id=credit.dedup_id))
    cluster.submit(duplicate)
    cluster.deliver(1)
    deliver(cluster, credit)
    cluster.drain()
    assert cluster.result(duplicate.command_id).replayed
    check_one_result_each(cluster, settled=True)
