"""The events sink's next batch, taken from Kafka and prepared while the sink writes the one before.

ClickHouse writes a batch with Python's GIL released (chDB runs its statements in C++), so
the sink's own Python work on the next batch (consuming it and building ClickHouse's
container of it: about half of the sink thread's time while it catches up) can run in the
meantime, on a thread of its own. At most one prepared batch waits, so memory holds three:
one being written, one waiting, one being taken.

Each item carries the consumer's positions (the next offset of each partition) from the
moment the batch was taken, and the reason is what the writer may conclude from them:
* a `Taken` batch: once the writer has written it, every message below those positions has
  been written (it came in this batch or an earlier one, and the queue keeps their order).
  What lies below them and was not delivered (transaction markers, aborted records) is no
  event. So a rebuild may stop there, and the view's position may move there;
* an `Idle` item, after a poll that returned nothing: every batch before it was handed over,
  so once the writer reaches it, the same holds.
The consumer's own position is of no use to the writer: it runs up to a batch ahead of what
is written.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Prepared = TypeVar("Prepared")

BATCHES_WAITING_MAX = 1  # prepared batches waiting for the writer: memory, and how far ahead of it the consumer runs
HANDOVER_CHECK_S = 0.1  # how often a handover blocked on a full queue looks whether the sink stops
STOP_JOIN_S = 10.0  # a poll in flight returns within the sink's flush interval; a take never blocks longer


@dataclasses.dataclass(frozen=True, slots=True)
class Taken(Generic[Prepared]):
    messages: list[Any]
    prepared: Prepared
    positions: dict[int, int]  # partition -> the consumer's next offset right after the batch was taken


@dataclasses.dataclass(frozen=True, slots=True)
class Idle:
    positions: dict[int, int]  # partition -> the consumer's next offset after a poll that returned nothing


class PrefetchFailed(RuntimeError):
    """The prefetching thread stopped on an error (its cause): the sink stops as if it had met it itself."""


class Prefetcher(Generic[Prepared]):
    """Takes batches (`take`: [] when none came), prepares them (`prepare`) and hands them,
    with `positions` read right after each take, to the writer in order (`next`). `between`
    runs on the same thread before each take: the consumer is this thread's alone."""

    def __init__(
        self,
        *,
        take: Callable[[], list[Any]],
        prepare: Callable[[list[Any]], Prepared],
        positions: Callable[[], dict[int, int]],
        between: Callable[[], None] = lambda: None,
        name: str,
    ) -> None:
        self._take = take
        self._between = between
        self._prepare = prepare
        self._positions = positions
        self._items: queue.Queue[Taken[Prepared] | Idle | BaseException] = queue.Queue(maxsize=BATCHES_WAITING_MAX)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def next(self, timeout_s: float) -> Taken[Prepared] | Idle | None:
        """The next item, or None if none came within `timeout_s`; the thread's error, raised."""
        try:
            item = self._items.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise PrefetchFailed(f"taking the next batch failed: {item}") from item
        return item

    def stop(self) -> None:
        """Stop taking batches; what was taken and not handed over is dropped (the sink
        resumes from what it wrote). Returns once the thread no longer uses the consumer."""
        self._stopping.set()
        self._thread.join(STOP_JOIN_S)
        if self._thread.is_alive():
            raise RuntimeError(f"the sink's prefetching thread did not stop within {STOP_JOIN_S:.0f}s")

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._between()  # what else the consumer's one thread must do (the sink's commits)
                messages = self._take()
                positions = self._positions()  # before preparing: the batch's own end, not a later one
                item = Taken(messages, self._prepare(messages), positions) if messages else Idle(positions)
                self._hand_over(item)
        except BaseException as error:  # noqa: BLE001  (handed to the writer's thread, raised there)
            self._hand_over(error)

    def _hand_over(self, item: Taken[Prepared] | Idle | BaseException) -> None:
        while not self._stopping.is_set():
            try:
                self._items.put(item, timeout=HANDOVER_CHECK_S)
                return
            except queue.Full:
                continue
