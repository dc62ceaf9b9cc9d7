"""A mapping that holds at most a bound of entries, forgetting the least recently used
first: what the gateway remembers per principal or per command stays bounded whatever
the traffic. The event loop is its only thread."""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

from ledger.errors import InvariantViolation

K = TypeVar("K")
V = TypeVar("V")


class BoundedLru(Generic[K, V]):
    def __init__(self, entries_max: int) -> None:
        if entries_max < 1:
            raise InvariantViolation(f"a bounded mapping holds at least one entry, not {entries_max}")
        self.entries_max = entries_max
        self._entries: collections.OrderedDict[K, V] = collections.OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.entries_max:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
