"""A cache of at most `entries` records, the recently used ones, in two generations of plain
dicts: the decoded-record cache in front of a shard's RocksDB (streams/store.py), and the
query service's newest row of each account the sink received (sinks/service.py).

A record put goes into the young generation. When the young generation is full it becomes
the old one, and the old one is dropped. A record found in the old generation moves to the
young one, so what commands keep reading stays. This is LRU in two steps: it keeps between
half and all of `entries`, and a hit costs one dict lookup.

It replaced an OrderedDict, which moved the entry to its end on every hit and, under a
ledger's constant churn of accounts, grew its hash table long after it was full: 10 MiB
at 100,000 entries, 17 MiB after 200,000 more went through it. The worker's memory grew
with it (bench.memory: +14 MiB from 100,000 to 200,000 accounts). A dict that is only
inserted into and then dropped whole never holds more table than its entries need
(tests/unit/foundation/test_record_cache.py).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

Slot = TypeVar("Slot", bound=Hashable)  # what a record is cached under: (table, key), an account id


class RecordCache(Generic[Slot]):
    __slots__ = ("_generation", "_old", "_young")

    def __init__(self, entries: int) -> None:
        if entries < 2:
            raise ValueError(f"a record cache needs room for 2 entries at least, not {entries}")
        self._generation = entries // 2
        self._young: dict[Slot, Any] = {}
        self._old: dict[Slot, Any] = {}

    def get(self, slot: Slot) -> Any:
        """The record cached under `slot`, or None."""
        value = self._young.get(slot)
        if value is not None:
            return value
        value = self._old.pop(slot, None)
        if value is not None:
            self.put(slot, value)  # read again: young again
        return value

    def put(self, slot: Slot, value: Any) -> None:
        """Cache `value` (never None) under `slot`; a copy the old generation may still hold is
        never served again: the young generation is read first, and replaces the old whole."""
        young = self._young
        if slot not in young and len(young) >= self._generation:
            self._old = young
            self._young = young = {}
        young[slot] = value

    def discard(self, slot: Slot) -> None:
        self._young.pop(slot, None)
        self._old.pop(slot, None)

    def clear(self) -> None:
        self._young = {}
        self._old = {}

    def __len__(self) -> int:
        """Entries held, a record in both generations counted twice (at most `entries`)."""
        return len(self._young) + len(self._old)
