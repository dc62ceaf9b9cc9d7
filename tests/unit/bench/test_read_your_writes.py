"""The read-your-writes benchmark's background load fails its run loudly: when it fell short
of its rate, when its thread failed, or when the view does not hold every event it wrote."""

from __future__ import annotations

from typing import Any

import pytest

from bench.read_your_writes import BackgroundWrites, ReadYourWritesFailed, deposit_after
from foundation.settings import Settings

ACCOUNTS = ["a-1", "a-2"]


def state(sequence: int) -> dict[str, Any]:
    return {
        "sequence": sequence,
        "currency": "EUR",
        "balance": 10,
        "held": 0,
        "available": 10,
        "pending_in": 0,
        "pending_out": 0,
        "lower_limit": 0,
        "upper_limit": 1000,
        "status": "ACTIVE",
        "parent_account_id": None,
        "updated_at_ms": 1_000,
    }


class View:
    """The query service's answers: each account at `sequence`."""

    def __init__(self, sequence: int) -> None:
        self.sequence = sequence

    def __call__(self, url: str) -> tuple[int, Any]:
        return 200, {"account": state(self.sequence)}


def load(view: View, *, produced: int, seconds: float, rate: float = 1000.0) -> BackgroundWrites:
    """A load as if its thread had run `seconds` and produced `produced` events, the view's
    accounts then at sequence 3 in the writer's own record."""
    writes = BackgroundWrites(Settings(), view, ACCOUNTS, rate)
    writes.produced = produced
    writes._started_s, writes._stopped_s = 0.0, seconds
    writes.states = {account: state(3) for account in ACCOUNTS}
    return writes


def test_a_load_that_met_its_rate_and_reached_the_view_passes() -> None:
    assert load(View(3), produced=1000, seconds=1.0).check(catch_up_s=0.1) == pytest.approx(1000.0)


def test_a_load_short_of_its_rate_fails_the_run() -> None:
    with pytest.raises(ReadYourWritesFailed, match="was 900/s, not 1000/s"):
        load(View(3), produced=900, seconds=1.0).check(catch_up_s=0.1)


def test_events_the_view_never_shows_fail_the_run() -> None:
    with pytest.raises(ReadYourWritesFailed, match="at sequence 2, not 3"):
        load(View(2), produced=1000, seconds=1.0).check(catch_up_s=0.2)


def test_a_failed_writer_thread_fails_the_run() -> None:
    writes = load(View(3), produced=1000, seconds=1.0)
    writes.failures.append("BufferError('Local: Queue full')")
    with pytest.raises(ReadYourWritesFailed, match="Queue full"):
        writes.check(catch_up_s=0.1)


def test_the_next_event_follows_the_view_exactly() -> None:
    event = deposit_after("a-1", state(7))
    assert (event.sequence, event.amount, event.balance, event.available) == (8, 1, 11, 11)
    assert event.occurred_at_ms == 1_001
