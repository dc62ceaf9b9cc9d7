"""A batch decided while the previous one's transaction commits: the store's two levels.

The worker seals a batch's writes when it produces their changelog records
(`staged_changes`), then decides the next batch on top of them while that transaction
commits. Reads must see the next batch's own writes, then the sealed ones, then RocksDB;
`apply_committed` must write only the sealed level and leave the next batch staged; an
abort must forget both (the next batch was decided on the aborted one's state). Checked
against a model of three dicts through every read the state machine makes (`get`, `first`)
and the counts the metrics show, for a head-read, a counted, a write-once and a plain table.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from codec import Codec
from ledger.errors import InvariantViolation
from ledger.state import CommandIndexEntry, ExpiryEntry, Table
from streams.store import LocalState, PartitionStore

CODEC = Codec()
PARTITION = 3
HEAD_READ = Table.HOLD_EXPIRIES  # read head first, and counted
WRITE_ONCE = Table.COMMANDS  # never cached once committed; absent keys remembered


def value_of(table: Table, text: str) -> ExpiryEntry | CommandIndexEntry:
    return ExpiryEntry(key=text) if table is HEAD_READ else CommandIndexEntry(dedup_key=text)


def text_of(value: object) -> str:
    return value.key if isinstance(value, ExpiryEntry) else value.dedup_key  # type: ignore[attr-defined]


class Model:
    def __init__(self) -> None:
        self.committed: dict[tuple[Table, str], str] = {}
        self.sealed: dict[tuple[Table, str], str | None] = {}
        self.staged: dict[tuple[Table, str], str | None] = {}

    def live(self) -> dict[tuple[Table, str], str]:
        merged: dict[tuple[Table, str], str | None] = {**self.committed, **self.sealed, **self.staged}
        return {slot: value for slot, value in merged.items() if value is not None}


def test_a_batch_staged_over_a_sealed_one_reads_both_and_commits_or_aborts_with_it(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=16)  # small: most reads reach RocksDB
    store = PartitionStore(local, PARTITION)
    model = Model()
    rng = random.Random(20)
    keys = [f"{number:04d}|k" for number in range(60)]
    sealed_records: list[tuple[bytes, bytes | None]] = []
    for step in range(8_000):
        table = rng.choice((HEAD_READ, WRITE_ONCE))
        key = rng.choice(keys)
        roll = rng.random()
        if roll < 0.3:
            store.put(table, key, value_of(table, f"v{step}"))
            model.staged[(table, key)] = f"v{step}"
        elif roll < 0.5:
            store.delete(table, key)
            model.staged[(table, key)] = None
        elif roll < 0.6 and (head := store.first(HEAD_READ)) is not None:
            store.delete(HEAD_READ, head[0])  # a tick taking the head
            model.staged[(HEAD_READ, head[0])] = None
        elif roll < 0.75:
            store.get(table, key)  # a read that may fill the cache or the absent set
        elif roll < 0.85 and not model.sealed:
            sealed_records = store.staged_changes()  # the batch's records go into its transaction
            assert len(sealed_records) == len(model.staged)
            model.sealed, model.staged = model.staged, {}
        elif roll < 0.95 and model.sealed:
            store.apply_committed(sealed_records)  # its transaction committed
            for slot, value in model.sealed.items():
                if value is None:
                    model.committed.pop(slot, None)
                else:
                    model.committed[slot] = value
            model.sealed = {}
            assert store.counts[HEAD_READ] == PartitionStore(local, PARTITION).counts[HEAD_READ]
        elif roll < 0.98:
            store.discard_staged()  # the sealed batch aborted: the one decided on it goes too
            model.sealed, model.staged = {}, {}
        live = model.live()
        for probe in rng.sample(keys, 4):
            for probed in (HEAD_READ, WRITE_ONCE):
                found = store.get(probed, probe)
                want = live.get((probed, probe))
                assert (None if found is None else text_of(found)) == want, (step, probed, probe)
        head = store.first(HEAD_READ)
        heads = sorted(key for (table, key) in live if table is HEAD_READ)
        assert (head[0] if head else None) == (heads[0] if heads else None), step
        if head is not None:
            assert text_of(head[1]) == live[(HEAD_READ, head[0])]
    local.close()


def test_a_second_batch_is_not_sealed_while_the_first_waits_for_rocksdb(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=16)
    store = PartitionStore(local, PARTITION)
    store.put(HEAD_READ, "a", ExpiryEntry(key="a"))
    first = store.staged_changes()
    store.put(HEAD_READ, "b", ExpiryEntry(key="b"))
    with pytest.raises(InvariantViolation, match="not yet applied"):
        store.staged_changes()
    store.apply_committed(first)
    assert [key for key, _ in store.staged_changes()] == [b"xb"]
    local.close()
