"""`PartitionStore.first`: the head of the tables read head-first (hold expiries, batch
deadlines), which every tick reads on every partition.

Their heads are deleted as they fall due, and RocksDB keeps a deleted key as a tombstone
until compaction reaches the bottom level. A seek from the table's prefix steps over every
one of them. In the million-command soak, one worker's ticks spent seconds there, outlived
the 3 s transaction timeout, were fenced, reloaded, and did it again: the worker answered
almost nothing for ten minutes. So the cost of `first` must not grow with what the table
once held, and what it answers must still be the smallest live key, staged writes included.
"""

from __future__ import annotations

import random
from pathlib import Path

from codec import Codec
from ledger.state import ExpiryEntry, Table
from streams.store import LocalState, PartitionStore

CODEC = Codec()
PARTITION = 2
TABLE = Table.BATCH_DEADLINES


def deadline(number: int) -> str:
    return f"{number:020d}|batch-{number}"


def commit(store: PartitionStore) -> None:
    store.apply_committed(store.staged_changes())


def a_day_of_batches(local: LocalState, count: int) -> None:
    """`count` deadlines written and deleted again, in transactions of a thousand, as
    batches start and finish; on disk (flushed), as they are after a while."""
    store = PartitionStore(local, PARTITION)
    for start in range(0, count, 1000):
        for number in range(start, start + 1000):
            store.put(TABLE, deadline(number), ExpiryEntry(key=f"batch-{number}"))
        commit(store)
        for number in range(start, start + 1000):
            store.delete(TABLE, deadline(number))
        commit(store)
    local.db.flush()


def test_the_head_of_a_table_that_once_held_many_keys_is_found_without_stepping_over_them(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=10, statistics=True)
    a_day_of_batches(local, 20_000)
    store = PartitionStore(local, PARTITION)  # a worker takes the partition
    store.put(TABLE, deadline(10**9), ExpiryEntry(key="live"))
    commit(store)
    stepped = local.keys_stepped_over()
    for _tick in range(100):
        assert store.first(TABLE) == (deadline(10**9), ExpiryEntry(key="live"))
        assert store.first(Table.HOLD_EXPIRIES) is None
    # Before: every call stepped over the 20,000 deleted deadlines (2,000,000 in all).
    assert local.keys_stepped_over() - stepped < 1_000
    local.close()


def test_an_empty_table_that_once_held_many_keys_answers_at_once(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=10, statistics=True)
    a_day_of_batches(local, 20_000)
    store = PartitionStore(local, PARTITION)
    stepped = local.keys_stepped_over()
    for _tick in range(100):
        assert store.first(TABLE) is None
    assert local.keys_stepped_over() - stepped < 1_000
    local.close()


def test_a_tick_that_expires_many_heads_in_one_transaction_steps_over_each_once(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=10, statistics=True)
    store = PartitionStore(local, PARTITION)
    count = 3_000
    for number in range(count):
        store.put(TABLE, deadline(number), ExpiryEntry(key=f"batch-{number}"))
    commit(store)
    local.db.flush()
    stepped = local.keys_stepped_over()
    expired = 0
    while (due := store.first(TABLE)) is not None:  # what clock.tick does
        store.delete(TABLE, due[0])
        expired += 1
    assert expired == count
    # Before: the n-th call walked over the n-1 heads this transaction had deleted (4.5 million).
    assert local.keys_stepped_over() - stepped < 3 * count
    commit(store)
    assert store.first(TABLE) is None
    local.close()


def test_first_is_the_smallest_live_key_under_any_mix_of_writes_aborts_and_take_overs(tmp_path: Path) -> None:
    """Against a model: a dict of what is committed and one of what is staged."""
    local = LocalState(tmp_path / "db", CODEC, cache_entries=4)
    store = PartitionStore(local, PARTITION)
    rng = random.Random(27)
    committed: dict[str, str] = {}
    staged: dict[str, str | None] = {}

    def expected() -> str | None:
        live = {**committed, **staged}
        keys = [key for key, value in live.items() if value is not None]
        return min(keys) if keys else None

    for _step in range(6_000):
        roll = rng.random()
        number = rng.randrange(200)
        if roll < 0.35:
            store.put(TABLE, deadline(number), ExpiryEntry(key=f"v{_step}"))
            staged[deadline(number)] = f"v{_step}"
        elif roll < 0.7:
            store.delete(TABLE, deadline(number))
            staged[deadline(number)] = None
        elif roll < 0.8 and (due := store.first(TABLE)) is not None:
            store.delete(TABLE, due[0])  # a tick taking the head
            staged[due[0]] = None
        elif roll < 0.9:
            commit(store)
            merged = {**committed, **staged}
            committed = {key: value for key, value in merged.items() if value is not None}
            staged.clear()
        elif roll < 0.96:
            store.discard_staged()
            staged.clear()
        else:
            store.discard_staged()  # the worker reloads: a new store over the same RocksDB
            staged.clear()
            store = PartitionStore(local, PARTITION)
        head = store.first(TABLE)
        want = expected()
        assert (head[0] if head else None) == want
        if head is not None:
            assert head[1] == ExpiryEntry(key={**committed, **staged}[head[0]] or "")
    local.close()
