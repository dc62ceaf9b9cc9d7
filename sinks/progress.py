"""Where the events sink's view is, stored beside the data: `sink_progress`.

The sink knows its position after every batch (SinkMetrics.positions, what read-your-writes,
the lag and reconciliation's cut use). It stores that position in ClickHouse at most
`PROGRESS_STORE_INTERVAL_S` after the data it covers, and at once whenever it is idle,
reaches the end of a rebuild or stops: one insert (a new part) per interval, not one per
batch. At 1,000 events/s that insert was a sixth of the sink's time, in batches of ~50.

Stored progress is never ahead of the data: it is stored only after the batches it covers
are written. So a crash repeats at most one interval's batches from the topic, whose rows
collapse onto the ones written (ReplacingMergeTree, read with FINAL); the events sink's
kill -9 test (tests/integration/test_query_side.py) kills it at random points of this.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

PROGRESS_STORE_INTERVAL_S = 1.0
PROGRESS_COLUMNS = ["partition", "next_offset", "written_at"]


# How rows reach a view: (table, rows, column names), the sink's own insert.
Insert = Callable[[str, list[list[Any]], list[str]], None]


class StoredProgress:
    """The positions written since the last store, and storing them (through the sink's
    insert, which knows the column types)."""

    def __init__(self, insert: Insert, *, interval_s: float = PROGRESS_STORE_INTERVAL_S) -> None:
        self._insert = insert
        self.interval_s = interval_s
        self._unstored: dict[int, int] = {}
        self._stored_s = time.monotonic()

    def advance(self, next_offsets: Mapping[int, int]) -> None:
        """Batches up to `next_offsets` are written (not yet stored)."""
        for partition, offset in next_offsets.items():
            self._unstored[partition] = max(offset, self._unstored.get(partition, 0))

    @property
    def due(self) -> bool:
        return bool(self._unstored) and time.monotonic() - self._stored_s >= self.interval_s

    def store(self) -> dict[int, int]:
        """Insert the unstored positions (max wins in the table); returns them. A failed
        insert keeps them unstored (the sink then restarts from what is stored)."""
        stored = self._unstored
        if stored:
            now_ms = int(time.time() * 1000)
            rows = [[partition, offset, now_ms] for partition, offset in stored.items()]
            self._insert("sink_progress", rows, PROGRESS_COLUMNS)
        self._unstored = {}
        self._stored_s = time.monotonic()
        return stored
