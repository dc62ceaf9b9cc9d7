"""Velocity rules: per-account limits on outgoing money and the number of outgoing payments
over rolling windows of an hour and a day, evaluated by the single writer on event time.

Time is the partition's clock (`Decision.now`, the largest log timestamp seen), never the
wall clock, so a replay decides the same. Outgoing payments are counted in per-minute buckets
(`VelocityBucket`, the minute since the epoch): the hour's window at time t is the buckets of
the 60 minutes up to and including t's minute, the day's the 1,440 — a rolling window to the
minute (it spans between 59 and 60 minutes, and 1,439 and 1,440). Only buckets with payments
are stored, and buckets older than a day are dropped whenever the account pays again, so an
account keeps at most `VELOCITY_BUCKETS_MAX` (1,440) of them.

What counts as outgoing: a withdrawal and a transfer's debit of the account, once accepted at
the source (a transfer refunded later still counted: the window is what was attempted out of
the account, the conservative reading). Captures of holds, reversals and batch postings are
not counted (a follow-up). A limit of 0 is no limit. A payment that would take a window past a
limit is rejected with VELOCITY_LIMIT_EXCEEDED (checked after funds and limits); with
`freeze_on_trip` the account is also locked (a LOCKED event of the rejected command).
"""

from __future__ import annotations

import dataclasses

from ledger.errors import ErrorCode, Rejection
from ledger.limits import AMOUNT_MAX

MINUTE_MS = 60_000
HOUR_MINUTES = 60
DAY_MINUTES = 24 * 60
VELOCITY_BUCKETS_MAX = DAY_MINUTES  # per account: a day of per-minute buckets, at most


@dataclasses.dataclass(slots=True, kw_only=True)
class VelocityBucket:
    minute: int  # minutes since the epoch of the partition's clock
    amount: int  # outgoing minor units in that minute (saturating at AMOUNT_MAX)
    count: int  # outgoing payments in that minute


@dataclasses.dataclass(slots=True, kw_only=True)
class VelocityState:
    """An account's rules (set by SetVelocityRules) and its recent outgoing payments."""

    account_id: str
    hour_amount_max: int  # 0: no limit
    hour_count_max: int
    day_amount_max: int
    day_count_max: int
    freeze_on_trip: bool
    buckets: list[VelocityBucket]  # oldest first; within the last day


def _window(state: VelocityState, *, now_ms: int, minutes: int) -> tuple[int, int]:
    """Outgoing amount and count in the `minutes` up to and including now's minute."""
    first = now_ms // MINUTE_MS - minutes + 1
    amount = count = 0
    for bucket in state.buckets:
        if bucket.minute >= first:
            amount = min(AMOUNT_MAX, amount + bucket.amount)
            count += bucket.count
    return amount, count


def check(state: VelocityState | None, *, amount: int, now_ms: int) -> Rejection | None:
    """Whether one more outgoing payment of `amount` stays within every rule."""
    if state is None:
        return None
    for name, minutes, amount_max, count_max in (
        ("hour", HOUR_MINUTES, state.hour_amount_max, state.hour_count_max),
        ("day", DAY_MINUTES, state.day_amount_max, state.day_count_max),
    ):
        sent, payments = _window(state, now_ms=now_ms, minutes=minutes)
        if amount_max and sent + amount > amount_max:
            return Rejection(
                ErrorCode.VELOCITY_LIMIT_EXCEEDED,
                f"account {state.account_id} sent {sent} in the last {name}; {amount} more would pass "
                f"its limit of {amount_max}",
            )
        if count_max and payments + 1 > count_max:
            return Rejection(
                ErrorCode.VELOCITY_LIMIT_EXCEEDED,
                f"account {state.account_id} made {payments} payments in the last {name}, its limit",
            )
    return None


def record(state: VelocityState, *, amount: int, now_ms: int) -> None:
    """Count one outgoing payment now; forget buckets older than a day."""
    minute = now_ms // MINUTE_MS
    state.buckets = [bucket for bucket in state.buckets if bucket.minute > minute - DAY_MINUTES]
    if state.buckets and state.buckets[-1].minute == minute:
        newest = state.buckets[-1]
        newest.amount = min(AMOUNT_MAX, newest.amount + amount)
        newest.count += 1
    else:
        state.buckets.append(VelocityBucket(minute=minute, amount=amount, count=1))
