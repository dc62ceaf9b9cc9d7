"""Rate limits per principal: one token bucket per principal id, for every request it
makes (submits and reads share it: one number an operator can reason about; reads that
cost the most have their own bounds too, READS_BUSY). A request takes a token; a bucket
refills at `rate_per_s` up to `burst`. Without a token the answer is 429 RATE_LIMITED with
Retry-After, the whole seconds until the next token.

Memory is bounded: at most `PRINCIPALS_TRACKED_MAX` buckets, the least recently used
forgotten first (a forgotten principal starts again with a full bucket: generous, never
wrong about anyone else). The clock is injected, so the tests decide what time it is.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

from gateway.bounded import BoundedLru
from ledger.errors import InvariantViolation

PRINCIPALS_TRACKED_MAX = 100_000  # buckets kept at once
RETRY_AFTER_S_MIN = 1  # Retry-After is whole seconds, never 0


@dataclasses.dataclass(slots=True)
class TokenBucket:
    tokens: float
    updated_s: float


class RateLimiter:
    def __init__(
        self,
        *,
        rate_per_s: int,
        burst: int,
        principals_max: int = PRINCIPALS_TRACKED_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s < 1 or burst < 1:
            raise InvariantViolation(f"a rate limit needs a rate and a burst of at least 1, not {rate_per_s}/{burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.clock = clock
        self.buckets: BoundedLru[str, TokenBucket] = BoundedLru(principals_max)

    def take(self, principal_id: str) -> int | None:
        """Take a token for one request: None if there was one, else the whole seconds to
        wait for the next (Retry-After)."""
        now_s = self.clock()
        bucket = self.buckets.get(principal_id)
        if bucket is None:
            bucket = TokenBucket(tokens=float(self.burst), updated_s=now_s)
            self.buckets.put(principal_id, bucket)
        elapsed_s = max(0.0, now_s - bucket.updated_s)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed_s * self.rate_per_s)
        bucket.updated_s = now_s
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(RETRY_AFTER_S_MIN, math.ceil((1.0 - bucket.tokens) / self.rate_per_s))
