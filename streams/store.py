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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch

from codec import Codec
from foundation.record_cache import RecordCache
from ledger.errors import InvariantViolation
from ledger.state import Table

_DELETED = object()
_ABSENT = object()  # in the decoded-record cache: RocksDB does not hold the key
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
# Tables every tick reads head first (`first`): queues of due times whose heads are deleted
# as they fall due. RocksDB keeps a deleted key as a tombstone until compaction reaches the
# bottom level, and a seek from a table's prefix steps over every one of them. In the
# million-command soak a worker's ticks spent seconds there, outlived the transaction
# timeout, were fenced, reloaded and did it again (tests/unit/streams/test_store_first.py).
# So each store learns where these tables start when it is created (a take-over steps over
# the old tombstones once, outside any transaction) and keeps that floor as it commits.
HEAD_READ_TABLES = (Table.HOLD_EXPIRIES, Table.BATCH_DEADLINES)
# Records a command writes once and the state machine seldom reads again (a duplicate, a query
# by command id, the end of the retention window, a reversal): not cached when committed. A
# transfer writes three or four of them, so cached they pushed out the accounts every command
# reads (tests/unit/streams/test_store_cache.py). A read still caches what it decodes.
WRITE_ONCE_TABLES = frozenset({Table.DEDUP, Table.COMMANDS, Table.RETENTION, Table.TRANSFERS})


def partition_prefix(partition: int) -> bytes:
    return _STATE + partition.to_bytes(2, "big")  # to_bytes refuses a partition past 65535


_TABLE_PREFIXES = {table: table.value.encode() for table in Table}


def changelog_key(table: Table, key: str) -> bytes:
    return _TABLE_PREFIXES[table] + key.encode()


def _keys_under(db: Rdict, prefix: bytes, start: bytes = b"") -> Iterator[bytes]:
    """The keys under `prefix`, from `prefix + start` on, in order, without the prefix. The
    iterator ends with the prefix: past it, a seek would step over the tombstones of whatever
    follows until it met a live key. Its bound is held here while it lives: rocksdict reads
    the bound in place, and a freed one ended iteration early."""
    bounds = ReadOptions()
    stem = prefix.rstrip(b"\xff")
    if stem:  # the smallest key past every key that starts with `prefix`
        bounds.set_iterate_upper_bound(stem[:-1] + bytes([stem[-1] + 1]))
    iterator = db.iter(bounds)
    iterator.seek(prefix + start)
    while iterator.valid():
        yield iterator.key()[len(prefix) :]
        iterator.next()


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    offset: int  # every changelog record below it is in RocksDB
    written_ms: int  # wall clock: a checkpoint too old may have missed compacted tombstones
    topic_id: str  # the changelog topic's id: a recreated topic invalidates local state


class StateDirectoryInUse(RuntimeError):
    """Another process holds the worker's RocksDB (its LOCK file)."""


class LocalState:
    """The worker's RocksDB, shared by its PartitionStores."""

    def __init__(self, path: Path, codec: Codec, *, cache_entries: int, statistics: bool = False) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        if statistics:  # RocksDB's counters (tests, diagnostics): a few percent of its speed
            options.enable_statistics()
        self._options = options
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
        try:
            self.db = Rdict(str(path), options=options)
        except Exception as error:  # rocksdict raises a bare Exception with RocksDB's status text
            if "LOCK" not in str(error):
                raise
            # RocksDB's LOCK file is held: another worker (the same worker id on this machine,
            # or a data directory shared by mistake) owns this state. Said before Kafka is touched.
            raise StateDirectoryInUse(
                f"the worker's state directory {path} is in use by another process (RocksDB: {error}): is a "
                "worker with this worker id already running on this STREAMWALLET_DATA_DIR? Give each worker "
                "its own worker id or data directory"
            ) from None
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

    def keys_read(self) -> int:
        """How many keys RocksDB has been asked for by point reads since it opened; needs
        `statistics`."""
        return self._statistic("rocksdb.number.keys.read")

    def keys_stepped_over(self) -> int:
        """How many keys RocksDB's iterators have stepped over (deleted or live) since it
        opened; needs `statistics`."""
        return self._statistic("rocksdb.number.iter.skip", "rocksdb.number.db.next")

    def _statistic(self, *names: str) -> int:
        """The sum of RocksDB's tickers `names` (needs `statistics`)."""
        total = 0
        for line in (self._options.get_statistics() or "").splitlines():
            name, _, count = line.partition(" COUNT : ")
            if name in names:
                total += int(count)
        return total

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
        return next(_keys_under(self.db, partition_prefix(partition)), None) is not None

    def keys_of(self, partition: int) -> int:
        """How many state records a partition has (tests and diagnostics)."""
        return self.keys_under(partition_prefix(partition))

    def keys_under(self, prefix: bytes) -> int:
        return sum(1 for _ in _keys_under(self.db, prefix))


class PartitionStore:
    """The `ledger.state.Store` of one shard: reads see this transaction's staged writes
    over the committed state; nothing is written to RocksDB until `apply_committed`.

    Two levels of writes may wait (the worker decides a batch while the previous one's
    transaction commits, streams/processor.py): `staged_changes` seals the writes staged
    so far, the sealed level's transaction commits or aborts, and meanwhile the next
    batch stages on top of it. Reads see the staged level, then the sealed one, then the
    committed state; `apply_committed` writes the sealed level to RocksDB, and
    `discard_staged` forgets both (the next batch was decided on the aborted one's state)."""

    def __init__(self, local: LocalState, partition: int) -> None:
        self._local = local
        self._db = local.db
        self._codec = local.codec
        self.partition = partition
        self._prefix = partition_prefix(partition)
        self._staged: dict[tuple[Table, str], Any] = {}
        self._sealed: dict[tuple[Table, str], Any] = {}  # its changelog records are in a transaction
        # Decoded committed records. Objects handed out may be mutated by the state
        # machine before it puts them, so the cache is dropped whenever a transaction aborts.
        self._cache: RecordCache[tuple[Table, str]] = RecordCache(local.cache_entries)
        # Keys of WRITE_ONCE_TABLES this transaction found absent in RocksDB (the cache keeps
        # the absent keys of the other tables, as _ABSENT).
        self._absent: set[tuple[Table, str]] = set()  # dropped when a sealed level reaches RocksDB
        # Entries of COUNTED_TABLES in the committed state (read by other threads: the metrics).
        self.counts: dict[Table, int] = {table: self._count(table) for table in COUNTED_TABLES}
        # For `first` (see HEAD_READ_TABLES). A table's floor: no live key of it in RocksDB is
        # below it (None: it has none). A table's cursor, within a transaction: every key of
        # it in RocksDB below the cursor is staged or sealed deleted (None: every one is). The
        # keys the staged and sealed levels put and did not delete again, per table (kept
        # until both levels are gone: a key put by a level RocksDB now holds is live there).
        self._floors: dict[Table, str | None] = {}
        self._cursors: dict[Table, str | None] = {}
        self._staged_live: dict[Table, set[str]] = collections.defaultdict(set)
        for table in HEAD_READ_TABLES:
            self._floors[table] = self._scan(table, None)[0]

    # -- the Store port -------------------------------------------------------------------

    def get(self, table: Table, key: str) -> Any:
        slot = (table, key)
        staged = self._staged.get(slot)
        if staged is None:
            staged = self._sealed.get(slot)
        if staged is not None:
            return None if staged is _DELETED else staged
        cached = self._cache.get(slot)
        if cached is not None:
            return None if cached is _ABSENT else cached
        if slot in self._absent:
            return None
        raw = self._db.get(self._prefix + changelog_key(table, key))
        if raw is None:
            # Remembered absent (a transfer asks for rules most accounts lack, and twice for
            # its id): in the cache, or for this transaction alone for a write-once record.
            if table in WRITE_ONCE_TABLES:
                self._absent.add(slot)
            else:
                self._cache.put(slot, _ABSENT)
            return None
        value = self._codec.decode(raw)
        self._cache.put(slot, value)
        return value

    def put(self, table: Table, key: str, value: Any) -> None:
        self._staged[(table, key)] = value
        self._staged_live[table].add(key)

    def delete(self, table: Table, key: str) -> None:
        self._staged[(table, key)] = _DELETED
        self._staged_live[table].discard(key)

    def first(self, table: Table) -> tuple[str, Any] | None:
        """Smallest key of a table, merging staged writes over RocksDB. Steps over each
        key deleted since the last call once, not over every key the table ever held."""
        if table not in self._floors:
            self._floors[table] = self._scan(table, None)[0]
        if table in self._cursors:
            cursor = self._cursors[table]
            committed = None if cursor is None else self._scan(table, cursor)[1]
        else:
            # The first key RocksDB holds from the floor on is the new floor: the keys deleted
            # since the floor was learnt are stepped over now, and never again.
            floor = self._floors[table]
            self._floors[table], committed = (None, None) if floor is None else self._scan(table, floor)
        self._cursors[table] = committed
        staged = min(self._staged_live[table], default=None)
        best = committed if staged is None or (committed is not None and committed < staged) else staged
        return None if best is None else (best, self.get(table, best))

    def _scan(self, table: Table, start: str | None) -> tuple[str | None, str | None]:
        """In one pass over `table` in RocksDB from `start` on (the table's start if None): the
        first key it holds, and the first this transaction has not deleted."""
        head: str | None = None
        for raw in _keys_under(
            self._db, self._prefix + _TABLE_PREFIXES[table], b"" if start is None else start.encode()
        ):
            key = raw.decode()
            if head is None:
                head = key
            if self._waiting((table, key)) is not _DELETED:
                return head, key
        return head, None

    def _waiting(self, slot: tuple[Table, str]) -> Any:
        """A slot's write not yet in RocksDB: staged, else sealed, else None."""
        staged = self._staged.get(slot)
        return self._sealed.get(slot) if staged is None else staged

    # -- transaction boundaries -------------------------------------------------------------

    def staged_changes(self) -> list[tuple[bytes, bytes | None]]:
        """The changelog records of this transaction: (key, Avro value or None). Seals the
        staged writes: what is staged from now on belongs to the next transaction."""
        if self._sealed:
            # One transaction's writes wait for RocksDB at a time: the loop applies or
            # discards a sealed level before it produces the next batch's changes.
            raise InvariantViolation(
                f"partition {self.partition}: a batch's changes sealed while the last batch's are not yet applied"
            )
        records = [
            (changelog_key(table, key), None if value is _DELETED else self._codec.encode(value))
            for (table, key), value in self._staged.items()
        ]
        self._sealed, self._staged = self._staged, {}
        return records

    def apply_committed(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """The transaction carrying `records` (the sealed level's) committed: make them the
        local state. A level staged on top of them stays staged."""
        self._recount()
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(self._prefix + key)
            else:
                batch.put(self._prefix + key, value)
        self._db.write(batch)
        floors = self._floors
        for slot, value in self._sealed.items():
            if value is _DELETED:
                self._cache.discard(slot)  # a floor stays below what is left: nothing to do
                continue
            table, staged_key = slot
            if table in WRITE_ONCE_TABLES:
                self._cache.discard(slot)  # not kept, and no older copy left behind
            else:
                self._cache.put(slot, value)
            if table in floors and ((floor := floors[table]) is None or staged_key < floor):
                floors[table] = staged_key
        self._sealed = {}
        # Keys found absent in RocksDB may be there now (a write-once record is not cached).
        self._absent.clear()
        if not self._staged:
            self._end_transaction()

    def _count(self, table: Table) -> int:
        return self._local.keys_under(self._prefix + _TABLE_PREFIXES[table])

    def _recount(self) -> None:
        """Before the staged writes reach RocksDB: each new entry of a counted table adds
        one, each deleted entry removes one. The state machine read most of them in this
        transaction (they are in the cache); RocksDB answers for the others."""
        counts = self.counts
        for slot, value in self._sealed.items():
            table = slot[0]
            if table not in counts:
                continue
            cached = self._cache.get(slot)
            if cached is None:
                existed = self._db.get(self._prefix + changelog_key(table, slot[1])) is not None
            else:
                existed = cached is not _ABSENT
            if value is _DELETED:
                counts[table] -= existed
            else:
                counts[table] += not existed

    def discard_staged(self) -> None:
        """The transaction aborted: forget its writes, those staged on top of them, and every
        object either may have touched."""
        self._end_transaction()
        self._cache.clear()

    def _end_transaction(self) -> None:
        self._absent.clear()
        self._staged.clear()
        self._sealed = {}
        self._staged_live.clear()
        self._cursors.clear()

    def has_staged(self) -> bool:
        return bool(self._staged or self._sealed)
