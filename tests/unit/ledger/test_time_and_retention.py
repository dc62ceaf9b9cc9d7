"""Time is the largest message timestamp seen; ticks expire holds, time out batches and
forget what left the retention window, each bounded per tick."""

from __future__ import annotations

from ledger.errors import ErrorCode
from ledger.events import EventKind, ResultStatus
from ledger.legs import Tick
from ledger.limits import EXPIRATIONS_PER_TICK_MAX
from ledger.shard import ShardConfig
from ledger.state import Table
from tests.unit.ledger.cluster import Cluster, check_quiescent, check_state
from tests.unit.ledger.test_error_codes import (
    accept_all,
    deposit,
    hold,
    lock,
    open_,
    reverse,
    same_dedup,
    transfer,
    void,
)

E = ErrorCode


def test_the_clock_never_goes_back() -> None:
    cluster = Cluster(1)
    shard = cluster.shards[0]
    shard.handle(Tick(worker_id="w"), timestamp_ms=5_000)
    shard.handle(Tick(worker_id="w"), timestamp_ms=1_000)
    assert shard.clock_ms() == 5_000
    cluster.now = 2_000  # a command stamped earlier than the clock is decided at the clock's time
    accept_all(cluster, open_("A@0"), deposit("A@0", 10))
    result = cluster.run(deposit("A@0", 1))
    assert result.decided_at_ms == 5_000 and cluster.events[-1].occurred_at_ms == 5_000


def test_hold_expiry_is_bounded_per_tick() -> None:
    holds = EXPIRATIONS_PER_TICK_MAX + 250
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"), deposit("A@0", holds))
    for index in range(holds):
        cluster.submit(hold("A@0", f"h{index}", 1, ttl_ms=1_000))
    account = cluster.account("A@0")
    assert account is not None and account.held == holds
    cluster.advance(1_000)
    expired = sum(1 for event in cluster.events if event.kind is EventKind.HOLD_EXPIRED)
    assert expired == EXPIRATIONS_PER_TICK_MAX
    cluster.tick()
    account = cluster.account("A@0")
    assert account is not None and account.held == 0
    # In expiry order, oldest first (ties by key).
    expired_ids = [event.correlation_id for event in cluster.events if event.kind is EventKind.HOLD_EXPIRED]
    assert len(expired_ids) == holds and len(set(expired_ids)) == holds
    check_state(cluster, {"USD": holds})


def test_dedup_memory_lasts_exactly_the_retention_window() -> None:
    cluster = Cluster(1, config=ShardConfig(retention_ms=10_000))
    accept_all(cluster, open_("A@0"))
    original = deposit("A@0", 5)
    cluster.run(original)
    cluster.advance(9_999)
    assert cluster.run(same_dedup(original)).replayed
    cluster.advance(1)  # recorded_at + retention: forgotten
    again = cluster.run(same_dedup(original))
    assert not again.replayed and again.status is ResultStatus.ACCEPTED
    account = cluster.account("A@0")
    assert account is not None and account.balance == 10  # a retry after the window is a new deposit
    assert cluster.run(same_dedup(original, amount=6)).code is E.DEDUP_CONFLICT  # remembered again


def test_the_size_bound_forgets_the_oldest_first() -> None:
    cluster = Cluster(1, config=ShardConfig(retained_entries_max=3))
    accept_all(cluster, open_("A@0"))
    first, *rest = [deposit("A@0", 1) for _ in range(4)]
    for command in (first, *rest):
        cluster.run(command)
    assert not cluster.run(same_dedup(first)).replayed  # evicted by the bound
    assert cluster.run(same_dedup(rest[-1])).replayed
    assert len(cluster.rows(Table.RETENTION)) <= 3


def test_finished_holds_and_transfers_are_forgotten_after_the_window() -> None:
    cluster = Cluster(3, config=ShardConfig(retention_ms=5_000))
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100), hold("A@0", "h", 10), void("A@0", "h"))
    sent = transfer("A@0", "X@1", 10)
    accept_all(cluster, sent)
    assert cluster.hold("A@0", "h") is not None and cluster.rows(Table.TRANSFERS)
    cluster.advance(5_000)
    assert cluster.hold("A@0", "h") is None and not cluster.rows(Table.TRANSFERS)
    assert cluster.run(hold("A@0", "h", 10)).status is ResultStatus.ACCEPTED  # the id is free again
    assert cluster.run(reverse("X@1", sent.command_id)).code is E.TRANSFER_NOT_FOUND


def test_a_reversal_refused_after_its_transfer_left_the_window() -> None:
    """The transfer record is forgotten while its reversal is in flight; the refund must
    still give the money back (and not resurrect the record)."""
    cluster = Cluster(3, config=ShardConfig(retention_ms=5_000))
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100))
    sent = transfer("A@0", "X@1", 10)
    accept_all(cluster, sent, lock("A@0"))
    cluster.now += 4_000
    back = reverse("X@1", sent.command_id)
    cluster.submit(back)  # in flight to the locked A
    cluster.advance(2_000)  # X's shard forgets the transfer record
    assert not cluster.rows(Table.TRANSFERS)
    cluster.drain()
    assert cluster.result(back.command_id).code is E.ACCOUNT_LOCKED
    receiver = cluster.account("X@1")
    assert receiver is not None and (receiver.balance, receiver.pending_out) == (10, 0)
    assert not cluster.rows(Table.TRANSFERS)
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)


def test_a_batch_times_out_only_while_preparing() -> None:
    cluster = Cluster(3, config=ShardConfig(batch_timeout_ms=1_000))
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100))
    from tests.unit.ledger.test_error_codes import batch, make_batch_id

    decided = batch(("A@0", -10), ("X@1", 10), batch_id=make_batch_id(2))
    cluster.submit(decided)
    cluster.deliver(0)
    cluster.deliver(1)
    cluster.deliver(2)
    cluster.deliver(2)  # both votes in: committed before the deadline
    cluster.advance(5_000)  # the deadline passes with the decision in flight
    cluster.drain()
    assert cluster.result(decided.command_id).status is ResultStatus.ACCEPTED
    late = batch(("A@0", -10), ("X@1", 10), batch_id=make_batch_id(2))
    cluster.submit(late)
    cluster.deliver(0)  # A prepares; X never hears of it in time
    cluster.advance(1_000)
    cluster.drain()
    assert cluster.result(late.command_id).code is E.BATCH_TIMEOUT
    released = [e for e in cluster.events if e.kind is EventKind.BATCH_RELEASED]
    assert {e.account_id for e in released} == {"A@0", "X@1"} and all(e.code is E.BATCH_TIMEOUT for e in released)
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)
