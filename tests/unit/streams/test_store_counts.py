"""The sizes of the tables the worker's metrics show (in-flight transfers, open holds, ...),
kept by each commit's changes instead of counted per scrape: they must equal a count of
RocksDB after any mix of new, changed, deleted and aborted entries."""

from __future__ import annotations

import random
from pathlib import Path

from codec import Codec
from ledger.state import ExpiryEntry, ShardMeta, Table
from streams.store import COUNTED_TABLES, LocalState, PartitionStore

CODEC = Codec()
PARTITION = 5


def counted_in_rocksdb(local: LocalState, table: Table) -> int:
    """What a fresh store over the same RocksDB counts: the truth."""
    return PartitionStore(local, PARTITION).counts[table]


def test_counts_follow_new_changed_deleted_and_aborted_entries(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=8)  # a small cache: most keys are not in it
    store = PartitionStore(local, PARTITION)
    assert store.counts == dict.fromkeys(COUNTED_TABLES, 0)
    rng = random.Random(14)
    keys = [f"{index:04d}|hold" for index in range(40)]
    for _transaction in range(300):
        for key in rng.sample(keys, rng.randint(1, 6)):
            if rng.random() < 0.4:
                store.delete(Table.HOLD_EXPIRIES, key)  # sometimes of a key that does not exist
            else:
                if rng.random() < 0.5:
                    store.get(Table.HOLD_EXPIRIES, key)  # read first, as the state machine mostly does
                store.put(Table.HOLD_EXPIRIES, key, ExpiryEntry(key=key))
        store.put(Table.META, "shard", ShardMeta(clock_ms=1, retention_head=0, retention_tail=0))  # not counted
        if rng.random() < 0.2:
            store.discard_staged()  # the transaction aborted: nothing changes
        else:
            store.apply_committed(store.staged_changes())
        assert store.counts[Table.HOLD_EXPIRIES] == counted_in_rocksdb(local, Table.HOLD_EXPIRIES)
    assert 0 < store.counts[Table.HOLD_EXPIRIES] < len(keys)
    assert store.counts[Table.OUTGOING] == 0
    local.close()


def test_a_store_taken_again_counts_what_rocksdb_holds(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=100)
    store = PartitionStore(local, PARTITION)
    for index in range(3):
        store.put(Table.HOLD_EXPIRIES, f"{index}", ExpiryEntry(key=f"{index}"))
    store.put(Table.HOLD_EXPIRIES, "other-table-neighbour", ExpiryEntry(key="x"))
    store.apply_committed(store.staged_changes())
    other = PartitionStore(local, PARTITION + 1)
    other.put(Table.HOLD_EXPIRIES, "elsewhere", ExpiryEntry(key="elsewhere"))
    other.apply_committed(other.staged_changes())
    assert PartitionStore(local, PARTITION).counts[Table.HOLD_EXPIRIES] == 4
    assert PartitionStore(local, PARTITION + 1).counts[Table.HOLD_EXPIRIES] == 1
    local.close()
