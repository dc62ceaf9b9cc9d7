"""One contract, run against both adapters of the `ledger.state.Store` port: the
in-memory store the domain tests use and the RocksDB store the workers use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from codec import Codec
from ledger.state import ExpiryEntry, InMemoryStore, ShardMeta, Store, Table
from streams.store import LocalState, PartitionStore

CODEC = Codec()


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    local = LocalState(tmp_path / "db", CODEC, cache_entries=10)
    partition_store = PartitionStore(local, 3)
    yield _Committing(partition_store)
    local.close()


class _Committing:
    """A PartitionStore whose writes commit at once, as if every call were a transaction."""

    def __init__(self, inner: PartitionStore) -> None:
        self.inner = inner

    def get(self, table: Table, key: str) -> object:
        return self.inner.get(table, key)

    def put(self, table: Table, key: str, value: object) -> None:
        self.inner.put(table, key, value)
        self.inner.apply_committed(self.inner.staged_changes())

    def delete(self, table: Table, key: str) -> None:
        self.inner.delete(table, key)
        self.inner.apply_committed(self.inner.staged_changes())

    def first(self, table: Table) -> tuple[str, object] | None:
        return self.inner.first(table)


def test_get_put_delete(store: Store) -> None:
    assert store.get(Table.META, "shard") is None
    store.put(Table.META, "shard", ShardMeta(clock_ms=5, retention_head=0, retention_tail=1))
    assert store.get(Table.META, "shard") == ShardMeta(clock_ms=5, retention_head=0, retention_tail=1)
    store.delete(Table.META, "shard")
    assert store.get(Table.META, "shard") is None


def test_tables_do_not_share_keys(store: Store) -> None:
    store.put(Table.HOLD_EXPIRIES, "k", ExpiryEntry(key="hold"))
    assert store.get(Table.BATCH_DEADLINES, "k") is None


def test_first_is_the_smallest_key_of_the_table(store: Store) -> None:
    assert store.first(Table.HOLD_EXPIRIES) is None
    for key in ["00000000000000000300|c", "00000000000000000100|a", "00000000000000000200|b"]:
        store.put(Table.HOLD_EXPIRIES, key, ExpiryEntry(key=key[-1]))
    store.put(Table.BATCH_DEADLINES, "00000000000000000001|z", ExpiryEntry(key="z"))
    assert store.first(Table.HOLD_EXPIRIES) == ("00000000000000000100|a", ExpiryEntry(key="a"))
    store.delete(Table.HOLD_EXPIRIES, "00000000000000000100|a")
    assert store.first(Table.HOLD_EXPIRIES) == ("00000000000000000200|b", ExpiryEntry(key="b"))


def test_staged_writes_are_invisible_to_rocksdb_until_committed(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=10)
    store = PartitionStore(local, 0)
    store.put(Table.META, "shard", ShardMeta(clock_ms=1, retention_head=0, retention_tail=0))
    assert store.get(Table.META, "shard") is not None  # the transaction sees its own writes
    assert PartitionStore(local, 0).get(Table.META, "shard") is None  # RocksDB does not
    records = store.staged_changes()
    store.apply_committed(records)
    assert PartitionStore(local, 0).get(Table.META, "shard") == ShardMeta(
        clock_ms=1, retention_head=0, retention_tail=0
    )
    store.delete(Table.META, "shard")
    store.put(Table.HOLD_EXPIRIES, "00000000000000000009|x", ExpiryEntry(key="x"))
    store.discard_staged()  # an aborted transaction leaves nothing behind
    assert store.get(Table.META, "shard") is not None
    assert store.first(Table.HOLD_EXPIRIES) is None
    local.close()


def test_staged_deletes_and_puts_merge_with_rocksdb_in_first(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=10)
    store = PartitionStore(local, 0)
    store.put(Table.HOLD_EXPIRIES, "00000000000000000005|a", ExpiryEntry(key="a"))
    store.put(Table.HOLD_EXPIRIES, "00000000000000000007|b", ExpiryEntry(key="b"))
    store.apply_committed(store.staged_changes())
    store.delete(Table.HOLD_EXPIRIES, "00000000000000000005|a")
    assert store.first(Table.HOLD_EXPIRIES) == ("00000000000000000007|b", ExpiryEntry(key="b"))
    store.put(Table.HOLD_EXPIRIES, "00000000000000000006|c", ExpiryEntry(key="c"))
    assert store.first(Table.HOLD_EXPIRIES) == ("00000000000000000006|c", ExpiryEntry(key="c"))
    local.close()


def test_partitions_are_separate_and_wipe_clears_one(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=10)
    for partition in (0, 1):
        store = PartitionStore(local, partition)
        store.put(Table.META, "shard", ShardMeta(clock_ms=partition, retention_head=0, retention_tail=0))
        store.apply_committed(store.staged_changes())
    local.wipe(0)
    assert PartitionStore(local, 0).get(Table.META, "shard") is None
    assert PartitionStore(local, 1).get(Table.META, "shard") is not None
    local.close()
