"""A worker's local state: one RocksDB (rocksdict) holding the shards of the partitions
it owns, each a cache of a prefix of its changelog partition.

Writes of the state machine are staged in memory (`PartitionStore`) and reach RocksDB
only after the Kafka transaction that carries their changelog records has committed
(`apply_committed`). So RocksDB never holds the effect of an aborted transaction, and a
crash at any point leaves it equal to the changelog up to some offset, which restore
then replays forward from the checkpoint stored beside the data.

Key layout:   b"s" + partition (2 bytes) + table letter + key  -> Avro single-object value
              b"c" + partition (2 bytes)                        -> "<offset>,<wall ms>,<topic id>"
"""

from __future__ import annotations

import collections
import dataclasses
import time
from pathlib import Path
from typing import Any

from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, Options, Rdict, WriteBatch

from codec import Codec
from ledger.state import Table

_DELETED = object()
_STATE = b"s"
_CHECKPOINT = b"c"
# RocksDB's memory: a small block cache (the decoded-record cache in front of it holds the
# hot accounts) and at most two memtables. Index and filters are partitioned and live in
# that cache with only their small top level pinned, so they do not grow with the number
# of accounts (outside the cache they took ~0.7 MiB per 100,000 accounts).
BLOCK_CACHE_BYTES = 8 * 1024 * 1024
WRITE_BUFFER_BYTES = 8 * 1024 * 1024
WRITE_BUFFERS_MAX = 2
BLOOM_BITS_PER_KEY = 10  # most lookups of a new command (dedup id, command id) miss: filters answer them
# Tables whose sizes the worker's metrics show (what is in flight, what is open): counted
# once when a partition is taken, then kept by each commit's changes (streams/telemetry.py).
COUNTED_TABLES = (Table.OUTGOING, Table.PREPARED, Table.BATCHES, Table.HOLD_EXPIRIES)


def partition_prefix(partition: int) -> bytes:
    return _STATE + partition.to_bytes(2, "big")  # to_bytes refuses a partition past 65535


def changelog_key(table: Table, key: str) -> bytes:
    return table.value.encode() + key.encode()


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    offset: int  # every changelog record below it is in RocksDB
    written_ms: int  # wall clock: a checkpoint too old may have missed compacted tombstones
    topic_id: str  # the changelog topic's id: a recreated topic invalidates local state


class LocalState:
    """The worker's RocksDB, shared by its PartitionStores."""

    def __init__(self, path: Path, codec: Codec, *, cache_entries: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(WRITE_BUFFERS_MAX)
        table_options = BlockBasedOptions()
        table_options.set_block_cache(Cache(BLOCK_CACHE_BYTES))
        table_options.set_bloom_filter(BLOOM_BITS_PER_KEY, False)
        table_options.set_index_type(BlockBasedIndexType.two_level_index_search())
        table_options.set_partition_filters(True)
        table_options.set_cache_index_and_filter_blocks(True)
        table_options.set_pin_top_level_index_and_filter(True)
        table_options.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table_options)
        self.db = Rdict(str(path), options=options)
        self.codec = codec
        self.cache_entries = cache_entries

    def close(self) -> None:
        self.db.close()

    def memory_bytes(self) -> dict[str, int]:
        """RocksDB's memory by use, for the worker's metrics."""
        names = {
            "memtables": "rocksdb.cur-size-all-mem-tables",
            "index_and_filters": "rocksdb.estimate-table-readers-mem",
            "block_cache": "rocksdb.block-cache-usage",
        }
        return {label: int(self.db.property_int_value(name) or 0) for label, name in names.items()}

    def checkpoint(self, partition: int) -> Checkpoint | None:
        raw = self.db.get(_CHECKPOINT + partition.to_bytes(2, "big"))
        if raw is None:
            return None
        offset, written_ms, topic_id = raw.decode().split(",")
        return Checkpoint(offset=int(offset), written_ms=int(written_ms), topic_id=topic_id)

    def write_checkpoint(self, partition: int, offset: int, topic_id: str) -> None:
        value = f"{offset},{int(time.time() * 1000)},{topic_id}"
        self.db.put(_CHECKPOINT + partition.to_bytes(2, "big"), value.encode())

    def wipe(self, partition: int) -> None:
        prefix = partition_prefix(partition)
        self.db.delete_range(prefix, prefix + b"\xff" * 8)
        self.db.delete(_CHECKPOINT + partition.to_bytes(2, "big"))

    def apply_changelog(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        """Write restored changelog records (key, value or None for a tombstone) as they are."""
        prefix = partition_prefix(partition)
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(prefix + key)
            else:
                batch.put(prefix + key, value)
        self.db.write(batch)

    def has_state(self, partition: int) -> bool:
        """Whether RocksDB holds any record of the partition's shard."""
        prefix = partition_prefix(partition)
        iterator = self.db.iter()
        iterator.seek(prefix)
        return bool(iterator.valid() and iterator.key().startswith(prefix))

    def keys_of(self, partition: int) -> int:
        """How many state records a partition has (tests and diagnostics)."""
        return self.keys_under(partition_prefix(partition))

    def keys_under(self, prefix: bytes) -> int:
        count = 0
        iterator = self.db.iter()
        iterator.seek(prefix)
        while iterator.valid() and iterator.key().startswith(prefix):
            count += 1
            iterator.next()
        return count


class PartitionStore:
    """The `ledger.state.Store` of one shard: reads see this transaction's staged writes
    over the committed state; nothing is written to RocksDB until `apply_committed`."""

    def __init__(self, local: LocalState, partition: int) -> None:
        self._local = local
        self._db = local.db
        self._codec = local.codec
        self.partition = partition
        self._prefix = partition_prefix(partition)
        self._staged: dict[tuple[Table, str], Any] = {}
        # Decoded committed records. Objects handed out may be mutated by the state
        # machine before it puts them, so the cache is dropped whenever a transaction aborts.
        self._cache: collections.OrderedDict[tuple[Table, str], Any] = collections.OrderedDict()
        # Entries of COUNTED_TABLES in the committed state (read by other threads: the metrics).
        self.counts: dict[Table, int] = {table: self._count(table) for table in COUNTED_TABLES}

    # -- the Store port -------------------------------------------------------------------

    def get(self, table: Table, key: str) -> Any:
        slot = (table, key)
        staged = self._staged.get(slot)
        if staged is not None:
            return None if staged is _DELETED else staged
        cached = self._cache.get(slot)
        if cached is not None:
            self._cache.move_to_end(slot)
            return cached
        raw = self._db.get(self._prefix + changelog_key(table, key))
        if raw is None:
            return None
        value = self._codec.decode(raw)
        self._remember(slot, value)
        return value

    def put(self, table: Table, key: str, value: Any) -> None:
        self._staged[(table, key)] = value

    def delete(self, table: Table, key: str) -> None:
        self._staged[(table, key)] = _DELETED

    def first(self, table: Table) -> tuple[str, Any] | None:
        """Smallest key of a table, merging staged writes over RocksDB."""
        prefix = self._prefix + table.value.encode()
        best: str | None = None
        iterator = self._db.iter()
        iterator.seek(prefix)
        while iterator.valid() and iterator.key().startswith(prefix):
            key = iterator.key()[len(prefix) :].decode()
            if self._staged.get((table, key)) is not _DELETED:
                best = key
                break
            iterator.next()
        for staged_table, staged_key in self._staged:
            if (
                staged_table is table
                and self._staged[(staged_table, staged_key)] is not _DELETED
                and (best is None or staged_key < best)
            ):
                best = staged_key
        return None if best is None else (best, self.get(table, best))

    # -- transaction boundaries -------------------------------------------------------------

    def staged_changes(self) -> list[tuple[bytes, bytes | None]]:
        """The changelog records of this transaction: (key, Avro value or None)."""
        return [
            (changelog_key(table, key), None if value is _DELETED else self._codec.encode(value))
            for (table, key), value in self._staged.items()
        ]

    def apply_committed(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """The transaction carrying `records` committed: make them the local state."""
        self._recount()
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(self._prefix + key)
            else:
                batch.put(self._prefix + key, value)
        self._db.write(batch)
        for slot, value in self._staged.items():
            if value is _DELETED:
                self._cache.pop(slot, None)
            else:
                self._remember(slot, value)
        self._staged.clear()

    def _count(self, table: Table) -> int:
        return self._local.keys_under(self._prefix + table.value.encode())

    def _recount(self) -> None:
        """Before the staged writes reach RocksDB: each new entry of a counted table adds
        one, each deleted entry removes one. The state machine read most of them in this
        transaction (they are in the cache); RocksDB answers for the others."""
        counts = self.counts
        for slot, value in self._staged.items():
            table = slot[0]
            if table not in counts:
                continue
            existed = slot in self._cache or self._db.get(self._prefix + changelog_key(table, slot[1])) is not None
            if value is _DELETED:
                counts[table] -= existed
            else:
                counts[table] += not existed

    def discard_staged(self) -> None:
        """The transaction aborted: forget its writes and every object it may have touched."""
        self._staged.clear()
        self._cache.clear()

    def has_staged(self) -> bool:
        return bool(self._staged)

    def _remember(self, slot: tuple[Table, str], value: Any) -> None:
        self._cache[slot] = value
        self._cache.move_to_end(slot)
        if len(self._cache) > self._local.cache_entries:
            self._cache.popitem(last=False)
