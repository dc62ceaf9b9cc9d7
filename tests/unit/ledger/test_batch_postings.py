"""Batches whose postings repeat an account (a payment and its fee), applied in order against
the running balance, local and across shards; and one code for one rejected batch, whatever
the partitions of its accounts and the order its votes arrive in."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.commands import Batch, BatchLeg, Deposit, LockAccount, OpenAccount
from ledger.errors import ErrorCode
from ledger.events import CommandResult, EventKind, ResultStatus
from ledger.limits import AMOUNT_MAX, BATCH_LEGS_MAX
from ledger.shard import ShardConfig
from tests.unit.ledger.cluster import (
    Auditor,
    Cluster,
    check_deterministic,
    check_quiescent,
    check_state,
    fresh,
    make,
    restart_fresh_ids,
)

E = ErrorCode


def _open(cluster: Cluster, account_id: str, *, funds: int = 0, upper_limit: int = AMOUNT_MAX) -> None:
    opened = cluster.run(make(OpenAccount, account_id=account_id, currency="USD", upper_limit=upper_limit))
    assert opened.status is ResultStatus.ACCEPTED, opened
    if funds:
        deposited = cluster.run(make(Deposit, account_id=account_id, amount=funds, currency="USD"))
        assert deposited.status is ResultStatus.ACCEPTED, deposited


def _batch(*postings: tuple[str, int], coordinator: int = 0) -> Batch:
    legs = [BatchLeg(account_id=account, amount=amount, currency="USD") for account, amount in postings]
    result: Batch = make(Batch, batch_id=f"{fresh('batch-')}@{coordinator}", legs=legs)
    return result


def _events_of(cluster: Cluster, batch: Batch) -> list[tuple[str, int, int]]:
    return [
        (event.account_id, event.sequence, event.amount)
        for event in cluster.events
        if event.correlation_id == batch.batch_id and event.kind is EventKind.BATCH_COMMITTED
    ]


def test_a_payment_and_its_fee_from_one_account_here() -> None:
    cluster = Cluster(3)
    auditor = Auditor()
    for account, funds in (("payer@0", 100), ("shop@0", 0), ("fees@0", 0)):
        _open(cluster, account, funds=funds)
    batch = _batch(("payer@0", -95), ("shop@0", 95), ("payer@0", -5), ("fees@0", 5))
    result = cluster.run(batch)
    assert result.status is ResultStatus.ACCEPTED, result
    assert [(p.account_id, p.balance) for p in result.positions] == [("payer@0", 0), ("shop@0", 95), ("fees@0", 5)]
    assert _events_of(cluster, batch) == [("payer@0", 3, -95), ("shop@0", 2, 95), ("payer@0", 4, -5), ("fees@0", 2, 5)]
    auditor.observe_all(cluster.events)
    auditor.check_settled()
    check_deterministic(cluster)


def test_a_payment_and_its_fee_from_one_account_across_shards() -> None:
    cluster = Cluster(3)
    auditor = Auditor()
    cluster.observers.append(lambda _, outcome: auditor.observe_all(outcome.events))
    for account, funds in (("payer@1", 100), ("shop@2", 0), ("fees@0", 0)):
        _open(cluster, account, funds=funds)
    batch = _batch(("payer@1", -95), ("shop@2", 95), ("payer@1", -5), ("fees@0", 5), coordinator=0)
    cluster.submit(batch)
    cluster.drain(random.Random(7))
    result = cluster.result(batch.command_id)
    assert result.status is ResultStatus.ACCEPTED, result
    assert [(p.account_id, p.balance) for p in result.positions] == [("payer@1", 0), ("shop@2", 95), ("fees@0", 5)]
    # The payer: prepared (3), then one event per posting (4, 5), in order.
    assert [e for e in _events_of(cluster, batch) if e[0] == "payer@1"] == [("payer@1", 4, -95), ("payer@1", 5, -5)]
    check_state(cluster)
    check_quiescent(cluster)
    auditor.check_settled()
    auditor.check_matches(cluster)
    check_deterministic(cluster)


def test_postings_apply_in_order_so_a_credit_can_fund_a_later_debit() -> None:
    for coordinator, accounts in ((0, ("A@0", "B@0", "C@0")), (2, ("A@0", "B@1", "C@2"))):
        cluster = Cluster(3)
        a, b, c = accounts
        _open(cluster, a, funds=60)
        _open(cluster, b, funds=100)
        _open(cluster, c)
        batch = _batch((b, -100), (a, 100), (a, -150), (c, 150), coordinator=coordinator)
        result = cluster.run(batch)
        assert result.status is ResultStatus.ACCEPTED, result
        assert (cluster.balance(a), cluster.balance(b), cluster.balance(c)) == (10, 0, 150)
        check_quiescent(cluster)
        reordered = _batch((c, -100), (a, -100), (a, 100), (b, 100), coordinator=coordinator)  # a has 10
        refused = cluster.run(reordered)
        assert refused.code is E.INSUFFICIENT_FUNDS and refused.message.startswith(f"leg 1 ({a}): "), refused
        check_state(cluster)
        check_quiescent(cluster)


def test_an_account_may_fill_every_posting_up_to_the_bound() -> None:
    cluster = Cluster(3)
    _open(cluster, "A@0", funds=1_000)
    _open(cluster, "B@1")
    half = BATCH_LEGS_MAX // 2
    batch = _batch(*[("A@0", -10)] * half, *[("B@1", 10)] * half, coordinator=2)
    result = cluster.run(batch)
    assert result.status is ResultStatus.ACCEPTED, result
    assert (cluster.balance("A@0"), cluster.balance("B@1")) == (1_000 - 10 * half, 10 * half)
    assert len(_events_of(cluster, batch)) == BATCH_LEGS_MAX
    check_quiescent(cluster)


# -- one code for one command ------------------------------------------------------------------------------------

ACCOUNTS = ("p", "q", "r", "s")
SETUP = st.fixed_dictionaries(
    {
        account: st.tuples(
            st.sampled_from(["open", "open", "open", "locked", "missing"]),
            st.integers(min_value=0, max_value=200),  # funds
            st.sampled_from([AMOUNT_MAX, AMOUNT_MAX, 250]),  # upper limit
        )
        for account in ACCOUNTS
    }
)
POSTINGS = st.lists(
    st.tuples(st.sampled_from(ACCOUNTS), st.integers(min_value=1, max_value=150)), min_size=1, max_size=7
)


def _balanced(postings: list[tuple[str, int]], sink: str) -> list[tuple[str, int]]:
    """Alternate debits and credits, then one posting on `sink` that nets the batch to zero."""
    signed = [(account, -amount if index % 2 == 0 else amount) for index, (account, amount) in enumerate(postings)]
    net = sum(amount for _, amount in signed)
    return [*signed, (sink, -net)] if net else signed


def _run_once(
    setup: dict[str, tuple[str, int, int]], legs: list[tuple[str, int]], *, route: Callable[[str], int], seed: int
) -> tuple[CommandResult, dict[str, int]]:
    restart_fresh_ids()
    cluster = Cluster(3, route=route)
    for account, (kind, funds, upper_limit) in setup.items():
        if kind == "missing":
            continue
        _open(cluster, account, funds=funds, upper_limit=upper_limit)
        if kind == "locked":
            cluster.run(make(LockAccount, account_id=account))
    batch = _batch(*legs)
    cluster.submit(batch)
    cluster.drain(random.Random(seed))
    check_state(cluster)
    check_quiescent(cluster)
    balances = {account.account_id: account.balance for account in cluster.accounts()}
    return cluster.result(batch.command_id), balances


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    setup=SETUP,
    postings=POSTINGS,
    sink=st.sampled_from(ACCOUNTS),
    shards=st.fixed_dictionaries({account: st.integers(min_value=0, max_value=2) for account in ACCOUNTS}),
    coordinator=st.integers(min_value=0, max_value=2),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_a_batch_gets_one_answer_whatever_its_partitions_and_vote_order(
    *,
    setup: dict[str, tuple[str, int, int]],
    postings: list[tuple[str, int]],
    sink: str,
    shards: dict[str, int],
    coordinator: int,
    seed: int,
) -> None:
    legs = _balanced(postings, sink)
    if len(legs) < 2:
        return
    coordinator_key = "batch"

    def spread(key: str) -> int:
        return coordinator if key.startswith(coordinator_key) else shards.get(key, 0)

    local, local_balances = _run_once(setup, legs, route=lambda key: 0, seed=seed)
    across, across_balances = _run_once(setup, legs, route=spread, seed=seed)
    reordered, _ = _run_once(setup, legs, route=spread, seed=seed + 1)
    # The code always agrees. So does the message (its leg and reason), except for FORBIDDEN:
    # the shard that takes a batch refuses its own accounts' foreign debits at once, before
    # any vote, so which such leg it names depends on where the accounts live.
    answers = {
        (result.status, result.code, "" if result.code is ErrorCode.FORBIDDEN else result.message)
        for result in (local, across, reordered)
    }
    assert len(answers) == 1, (local, across, reordered)
    assert local_balances == across_balances


# -- legs delivered again ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("after_window", [False, True])
def test_every_leg_of_a_finished_multi_posting_batch_replayed_changes_nothing(after_window: bool) -> None:
    """An operator re-injects the legs of a committed batch whose payer appears twice, right
    away or after the retention window: the prepare reserves the postings again, its replayed
    commit names the first reservation's sequence (refused), and the coordinator, which has
    finished the batch, aborts the new reservation (presumed abort). Money moves once."""
    window_ms = 10_000
    cluster = Cluster(3, config=ShardConfig(retention_ms=window_ms))
    _open(cluster, "payer@1", funds=100)
    _open(cluster, "shop@2")
    _open(cluster, "fees@0")
    batch = _batch(("payer@1", -60), ("shop@2", 60), ("payer@1", -4), ("fees@0", 4), coordinator=0)
    cluster.submit(batch)
    delivered = []
    while cluster.pending():
        shard = next(index for index, queue in enumerate(cluster.queues) if queue)
        delivered.append((shard, cluster.queues[shard][0].leg))
        cluster.deliver(shard)
    assert cluster.result(batch.command_id).status is ResultStatus.ACCEPTED
    if after_window:
        cluster.advance(window_ms)
    for shard, leg in delivered:
        cluster.handle(shard, leg, cluster.now, tainted=True)
    cluster.drain()
    assert [cluster.balance(account) for account in ("payer@1", "shop@2", "fees@0")] == [36, 60, 4]
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)
