"""Token buckets per principal (gateway/rate_limits.py) on a clock the test moves."""

from __future__ import annotations

import pytest

from gateway.rate_limits import RateLimiter
from ledger.errors import InvariantViolation


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_a_burst_then_the_rate_and_retry_after_in_whole_seconds() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=5, clock=clock)
    assert [limiter.take("alice") for _ in range(5)] == [None] * 5
    assert limiter.take("alice") == 1  # half a second to the next token: rounded up to 1
    clock.now_s += 0.5
    assert limiter.take("alice") is None
    assert limiter.take("alice") == 1
    clock.now_s += 10  # refills to the burst, never past it
    assert [limiter.take("alice") for _ in range(6)] == [None] * 5 + [1]


def test_retry_after_is_the_seconds_to_the_next_token_at_a_slow_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=clock)
    assert limiter.take("alice") is None
    assert limiter.take("alice") == 1
    clock.now_s += 0.2
    assert limiter.take("alice") == 1
    clock.now_s += 0.8
    assert limiter.take("alice") is None


def test_principals_have_buckets_of_their_own() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1, burst=2, clock=clock)
    assert [limiter.take("alice") for _ in range(3)] == [None, None, 1]
    assert [limiter.take("bob") for _ in range(3)] == [None, None, 1]


def test_memory_is_bounded_and_the_least_recent_principal_is_forgotten_first() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1, burst=1, principals_max=3, clock=clock)
    for name in ("a", "b", "c"):
        assert limiter.take(name) is None
    assert limiter.take("a") == 1  # a is the most recent now
    assert limiter.take("d") is None  # b, the least recent, is forgotten
    assert len(limiter.buckets) == 3
    assert limiter.take("a") == 1 and limiter.take("c") == 1  # still remembered, still empty
    assert limiter.take("b") is None  # forgotten: a full bucket again


def test_a_clock_going_back_gives_nothing_away() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=clock)
    assert limiter.take("alice") is None
    clock.now_s -= 100
    assert limiter.take("alice") == 1


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (1, 0), (-1, 5)])
def test_a_limit_needs_a_rate_and_a_burst(rate: int, burst: int) -> None:
    with pytest.raises(InvariantViolation):
        RateLimiter(rate_per_s=rate, burst=burst)
