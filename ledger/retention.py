"""The retention queue: what a shard remembers for a while, in the order it was recorded.

The dedup memory, the command index, finished holds and the records of credited
transfers are kept for the retention window (`retention_ms`), then forgotten. Each
`handle` call that keeps something appends one `RetentionEntry` (its keys and its time)
at the queue's tail (`ShardMeta.retention_tail`); forgetting takes entries from the head
(`ShardMeta.retention_head`), oldest first, and only once they are older than the window
— never because the queue is long (a full queue refuses new commands instead, see
`flows/intake.py`). An entry whose command is still in flight waits for it. Time is the
partition's clock, so the same entries are forgotten at the same point on every replay.
The entries live in the store (RocksDB in the worker), not in memory.

Inputs of the same millisecond share the tail entry (up to `RETENTION_INPUTS_PER_ENTRY_MAX`):
a bundle's commands all carry their message's timestamp, and a busy partition decides several
commands a millisecond, so they write one retention record where they wrote one each. Every
key of an entry was recorded at its `recorded_at_ms`, so each is still forgotten exactly when
its own window ends. The window's size counts inputs, not entries (`size`).
"""

from __future__ import annotations

from ledger.errors import InvariantViolation
from ledger.keys import retention_key
from ledger.limits import RETENTION_INPUTS_PER_ENTRY_MAX
from ledger.state import CommandIndexEntry, DedupEntry, RetainedKey, RetentionEntry, ShardMeta, Store, Table


def record(store: Store, meta: ShardMeta, *, keys: list[RetainedKey], recorded_at_ms: int) -> None:
    """Add one input's keys at the tail of the queue: to the tail entry if it was recorded
    in the same millisecond and has room, else as a new entry."""
    tail = newest(store, meta)
    if tail is not None and tail.recorded_at_ms == recorded_at_ms and tail.inputs < RETENTION_INPUTS_PER_ENTRY_MAX:
        tail.keys.extend(keys)
        tail.inputs += 1
        meta.inputs_folded += 1
        store.put(Table.RETENTION, retention_key(meta.retention_tail - 1), tail)
        return
    entry = RetentionEntry(recorded_at_ms=recorded_at_ms, keys=keys)
    store.put(Table.RETENTION, retention_key(meta.retention_tail), entry)
    meta.retention_tail += 1


def size(meta: ShardMeta) -> int:
    """How many inputs the queue remembers (what `retained_entries_max` bounds)."""
    return meta.retention_tail - meta.retention_head + meta.inputs_folded


def oldest(store: Store, meta: ShardMeta) -> RetentionEntry | None:
    """The entry at the head of the queue, or None when the queue is empty."""
    return _entry(store, meta, meta.retention_head)


def newest(store: Store, meta: ShardMeta) -> RetentionEntry | None:
    """The entry at the tail of the queue, or None when the queue is empty."""
    return _entry(store, meta, meta.retention_tail - 1)


def _entry(store: Store, meta: ShardMeta, number: int) -> RetentionEntry | None:
    """Entry `number`, or None when the queue is empty; one missing inside it stops the worker."""
    if meta.retention_head >= meta.retention_tail:
        return None
    key = retention_key(number)
    entry: RetentionEntry | None = store.get(Table.RETENTION, key)
    if entry is None:
        raise InvariantViolation(
            f"retention entry {key} is missing between head {meta.retention_head} and tail {meta.retention_tail}"
        )
    return entry


def forget_expired(store: Store, meta: ShardMeta, *, now_ms: int, retention_ms: int, count_max: int) -> int:
    """Forget entries older than the window, oldest first, while fewer than `count_max`
    inputs' worth are forgotten (an entry is forgotten whole: the last may pass the budget by
    less than `RETENTION_INPUTS_PER_ENTRY_MAX`); returns how many inputs' worth."""
    forgotten = 0
    while forgotten < count_max and (entry := oldest(store, meta)) is not None:
        if entry.recorded_at_ms + retention_ms > now_ms or not _forget_oldest(store, meta, entry):
            break
        forgotten += entry.inputs
    return forgotten


def _forget_oldest(store: Store, meta: ShardMeta, entry: RetentionEntry) -> bool:
    """Forget the oldest entry, unless it holds a command still in flight (its waiting
    duplicates need its result): then the queue waits for it and False is returned.

    A dedup key whose malformed command a corrected one took over (flows/intake.py) holds a
    newer entry than this one: it is left to the newer entry's own retention entry. The ids
    of an entry's duplicates are forgotten with it."""
    for retained in entry.keys:
        if retained.table is Table.DEDUP:
            dedup: DedupEntry | None = store.get(Table.DEDUP, retained.key)
            if dedup is not None and dedup.recorded_at_ms <= entry.recorded_at_ms and dedup.result is None:
                return False
    for retained in entry.keys:
        if not _newer_than(store, retained, entry):
            _forget(store, retained)
    store.delete(Table.RETENTION, retention_key(meta.retention_head))
    meta.retention_head += 1
    meta.inputs_folded -= entry.inputs - 1
    if meta.inputs_folded < 0 or (meta.retention_head == meta.retention_tail and meta.inputs_folded != 0):
        raise InvariantViolation(
            f"the retention queue counts {meta.inputs_folded} folded inputs with entries {meta.retention_head} "
            f"to {meta.retention_tail} left"
        )
    return True


def _newer_than(store: Store, retained: RetainedKey, entry: RetentionEntry) -> bool:
    """Whether the record under `retained` was recorded after `entry` (a correction's)."""
    if retained.table is not Table.DEDUP:
        return False
    dedup: DedupEntry | None = store.get(Table.DEDUP, retained.key)
    return dedup is not None and dedup.recorded_at_ms > entry.recorded_at_ms


def _forget(store: Store, retained: RetainedKey) -> None:
    if retained.table is Table.DEDUP:
        dedup: DedupEntry | None = store.get(Table.DEDUP, retained.key)
        for command_id in [] if dedup is None else dedup.duplicates:
            index: CommandIndexEntry | None = store.get(Table.COMMANDS, command_id)
            if index is not None and index.dedup_key == retained.key:
                store.delete(Table.COMMANDS, command_id)
    store.delete(retained.table, retained.key)
