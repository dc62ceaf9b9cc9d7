"""Velocity rules (ledger/velocity.py): rolling windows on the partition's clock, the freeze,
the bound on what an account keeps, and the same decisions on replay."""

from __future__ import annotations

from ledger.accounts import AccountStatus
from ledger.commands import Deposit, OpenAccount, SetVelocityRules, Transfer, Withdraw
from ledger.errors import ErrorCode
from ledger.events import EventKind, ResultStatus
from ledger.state import Table
from ledger.velocity import DAY_MINUTES, MINUTE_MS, VELOCITY_BUCKETS_MAX, VelocityState
from tests.unit.ledger.cluster import Cluster, check_deterministic, check_quiescent, check_state, make

E = ErrorCode
HOUR_MS = 60 * MINUTE_MS


def _cluster(**rules: object) -> Cluster:
    cluster = Cluster(3)
    for account in ("A@0", "B@0", "X@1"):
        assert cluster.run(make(OpenAccount, account_id=account, currency="USD")).code is None
    assert cluster.run(make(Deposit, account_id="A@0", amount=100_000, currency="USD")).code is None
    assert cluster.run(make(SetVelocityRules, account_id="A@0", currency="USD", **rules)).code is None
    return cluster


def _withdraw(cluster: Cluster, amount: int) -> ErrorCode | None:
    return cluster.run(make(Withdraw, account_id="A@0", amount=amount, currency="USD")).code


def _state(cluster: Cluster) -> VelocityState:
    state: VelocityState | None = cluster.stores[0].get(Table.VELOCITY, "A@0")
    assert state is not None
    return state


def test_the_hours_amount_rolls_with_the_partitions_clock() -> None:
    cluster = _cluster(hour_amount_max=100)
    assert _withdraw(cluster, 60) is None
    cluster.advance(30 * MINUTE_MS)
    assert _withdraw(cluster, 40) is None
    assert _withdraw(cluster, 1) is E.VELOCITY_LIMIT_EXCEEDED
    cluster.advance(30 * MINUTE_MS)  # the first payment's minute has left the hour
    assert _withdraw(cluster, 60) is None
    assert _withdraw(cluster, 1) is E.VELOCITY_LIMIT_EXCEEDED
    assert cluster.balance("A@0") == 100_000 - 160
    check_deterministic(cluster)


def test_the_days_count_counts_transfers_here_and_across_partitions() -> None:
    cluster = _cluster(day_count_max=3)
    for destination in ("B@0", "X@1", "B@0"):
        result = cluster.run(make(Transfer, from_account_id="A@0", to_account_id=destination, amount=5, currency="USD"))
        assert result.status is ResultStatus.ACCEPTED, result
    refused = cluster.run(make(Transfer, from_account_id="A@0", to_account_id="X@1", amount=5, currency="USD"))
    assert refused.code is E.VELOCITY_LIMIT_EXCEEDED and "3 payments in the last day" in refused.message
    cluster.advance(DAY_MINUTES * MINUTE_MS)
    assert _withdraw(cluster, 5) is None
    check_state(cluster)
    check_quiescent(cluster)


def test_a_transfer_the_destination_refuses_here_is_not_counted() -> None:
    cluster = _cluster(hour_count_max=1)
    refused = cluster.run(make(Transfer, from_account_id="A@0", to_account_id="nobody@0", amount=5, currency="USD"))
    assert refused.code is E.ACCOUNT_NOT_FOUND
    assert _withdraw(cluster, 5) is None


def test_a_tripped_rule_freezes_the_account_when_asked() -> None:
    cluster = _cluster(hour_count_max=1, freeze_on_trip=True)
    assert _withdraw(cluster, 5) is None
    events_before = len(cluster.events)
    assert _withdraw(cluster, 5) is E.VELOCITY_LIMIT_EXCEEDED
    (locked,) = cluster.events[events_before:]
    assert locked.kind is EventKind.LOCKED and locked.code is E.VELOCITY_LIMIT_EXCEEDED
    account = cluster.account("A@0")
    assert account is not None and account.status is AccountStatus.LOCKED
    assert _withdraw(cluster, 5) is E.ACCOUNT_LOCKED


def test_rules_can_change_and_be_removed_and_what_was_paid_still_counts() -> None:
    cluster = _cluster(hour_amount_max=1_000)
    assert _withdraw(cluster, 600) is None
    assert cluster.run(make(SetVelocityRules, account_id="A@0", currency="USD", hour_amount_max=700)).code is None
    assert _withdraw(cluster, 101) is E.VELOCITY_LIMIT_EXCEEDED
    removed = cluster.run(make(SetVelocityRules, account_id="A@0", currency="USD"))
    assert removed.code is None and removed.message == "velocity rules removed"
    assert cluster.stores[0].get(Table.VELOCITY, "A@0") is None
    assert _withdraw(cluster, 5_000) is None


def test_an_account_keeps_at_most_a_day_of_minutes() -> None:
    cluster = _cluster(day_amount_max=10**12)
    for _ in range(DAY_MINUTES + 50):
        cluster.advance(MINUTE_MS, tick=False)
        assert _withdraw(cluster, 1) is None
    buckets = _state(cluster).buckets
    assert len(buckets) == VELOCITY_BUCKETS_MAX
    assert buckets[-1].minute - buckets[0].minute == DAY_MINUTES - 1
