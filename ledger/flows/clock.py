"""Ticks: everything that happens because the partition's time passed.

Each worker writes a `Tick` every second to those of its partitions on which something
waits for time (`due_ms`: a hold's expiry, a batch's deadline, the end of the retention
window), so that on an idle partition too holds expire, batches time out and the
retention window moves on; a partition on which nothing waits gets no tick. The time is
the partition's clock (the largest message timestamp seen), so a replay expires the same
things at the same point. One tick does at most `EXPIRATIONS_PER_TICK_MAX` things; the
rest wait for the next tick.

Every other input first releases the holds its clock made due and aborts the batches
whose deadline it reached (`time_passes`, at most `EXPIRATIONS_PER_INPUT_MAX` of each): a hold
past its expiry reserves nothing for any later input, and a vote after its batch's deadline
finds the batch timed out, however far away the next tick is (its worker fenced, the broker
away). So after every input no hold is open past the clock, which the fault tests' checker
holds the changelog to (tests/checker.py).
"""

from __future__ import annotations

from collections.abc import Callable

from ledger import retention
from ledger.decision import Decision
from ledger.flows import batches, holds
from ledger.keys import time_of
from ledger.legs import Tick
from ledger.limits import EXPIRATIONS_PER_INPUT_MAX, EXPIRATIONS_PER_TICK_MAX
from ledger.state import ShardMeta, Store, Table


def tick(decision: Decision, _tick_message: Tick) -> None:
    budget = EXPIRATIONS_PER_TICK_MAX - expire_holds(decision, count_max=EXPIRATIONS_PER_TICK_MAX)
    budget -= time_out_batches(decision, count_max=budget)
    forget_expired(decision, count_max=budget)


def due_ms(store: Store, meta: ShardMeta | None, *, retention_ms: int) -> int | None:
    """The earliest partition time at which a tick would do anything: the first hold's
    expiry, the first batch deadline, or the end of the oldest retention entry's window;
    None when nothing waits for time. A tick stamped before it changes nothing but the clock
    (test_time_and_retention.py::test_a_tick_before_the_due_time_changes_nothing_but_the_clock),
    so a worker need not write one (streams/processor.py)."""
    times = []
    for queue in (Table.HOLD_EXPIRIES, Table.BATCH_DEADLINES):
        first = store.first(queue)
        if first is not None:
            times.append(time_of(first[0]))
    oldest = None if meta is None else retention.oldest(store, meta)
    if oldest is not None:
        times.append(oldest.recorded_at_ms + retention_ms)
    return min(times, default=None)


def time_passes(decision: Decision) -> None:
    """What the clock made due, before any input that is not a tick is decided (at most
    `EXPIRATIONS_PER_INPUT_MAX` holds and as many batches): a hold past its expiry reserves
    nothing for the input, and a batch past its deadline is aborted before a vote counts."""
    expire_holds(decision, count_max=EXPIRATIONS_PER_INPUT_MAX)
    time_out_batches(decision, count_max=EXPIRATIONS_PER_INPUT_MAX)


def expire_holds(decision: Decision, *, count_max: int) -> int:
    """Release the holds whose expiry the clock reached, oldest first (at most `count_max`);
    returns how many entries it took from the queue."""
    return _take_due(decision, Table.HOLD_EXPIRIES, holds.expire, count_max=count_max)


def time_out_batches(decision: Decision, *, count_max: int) -> int:
    """Abort the batches this shard coordinates whose deadline the clock reached and that
    are still preparing, oldest first (at most `count_max`); returns how many deadlines it
    took from the queue."""
    return _take_due(decision, Table.BATCH_DEADLINES, batches.time_out, count_max=count_max)


def _take_due(decision: Decision, queue: Table, act: Callable[[Decision, str], None], *, count_max: int) -> int:
    """Take the entries of a queue of due times whose time the clock reached, oldest first (at
    most `count_max`), and `act` on the key each names; returns how many it took."""
    store = decision.store
    taken = 0
    while taken < count_max and (due := store.first(queue)) is not None:
        if time_of(due[0]) > decision.now:
            break
        taken += 1
        store.delete(queue, due[0])
        act(decision, due[1].key)
    return taken


def forget_expired(decision: Decision, *, count_max: int) -> None:
    """Forget what has been remembered longer than the retention window (about `count_max`
    inputs' worth, see `retention.forget_expired`). Ticks do it, and every other input a little
    too (`RETENTION_FORGETS_PER_INPUT_MAX`), so forgetting keeps up with any input rate."""
    retention.forget_expired(
        decision.store,
        decision.meta,
        now_ms=decision.now,
        retention_ms=decision.config.retention_ms,
        count_max=count_max,
    )
