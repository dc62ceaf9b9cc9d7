"""When the worker gives up on its transactional producer (streams/transactions.py).

A broker restart on a loaded machine fenced each new producer's first transaction every
7-8 s (it outlived transaction.timeout.ms while the broker was away) and the old rule, ten
replacements within five minutes, stopped both workers during one outage
(test_broker_loss). The rule now: failing without a commit for longer than the outage
budget."""

from __future__ import annotations

import pytest

from streams.transactions import FailureStreak, ProducerFailing

BUDGET_S = 120.0


def test_replacements_every_few_seconds_through_an_outage_shorter_than_the_budget_are_borne() -> None:
    streak = FailureStreak(BUDGET_S)
    for second in range(0, 110, 7):  # 16 failures in 105 s
        streak.failed(float(second), "fenced")
    streak.committed()
    for second in range(200, 310, 7):  # and again after a commit
        streak.failed(float(second), "fenced")


def test_failing_without_a_commit_for_longer_than_the_budget_stops_the_worker() -> None:
    streak = FailureStreak(BUDGET_S)
    streak.failed(0.0, "fenced")
    streak.failed(60.0, "fenced")
    with pytest.raises(ProducerFailing, match="3 times over 121s without committing"):
        streak.failed(121.0, "fenced")


def test_a_commit_starts_the_count_again() -> None:
    streak = FailureStreak(BUDGET_S)
    streak.failed(0.0, "fenced")
    streak.committed()
    streak.failed(119.0, "fenced")
    streak.failed(200.0, "fenced")  # 81 s into the new streak
