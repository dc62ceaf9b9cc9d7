"""The sink's prefetching thread (sinks/prefetch.py): batches handed over in order, each with
the positions read right after it was taken, errors raised in the writer's thread, a bounded
lead over the writer, a stop that does not wait for the writer; and the sink's loop, which
leaves the consumer to that thread alone."""

from __future__ import annotations

import itertools
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from bench.event_workload import generate
from codec import Codec
from sinks import events as events_module
from sinks.prefetch import BATCHES_WAITING_MAX, Idle, Prefetcher, PrefetchFailed, Taken
from tests.unit.sinks.support import PARTITIONS, messages, sink


class FakeConsumer:
    """Batches of numbers, then nothing; its position is the next number per partition 0."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = list(batches)
        self.next_offset = 0
        self.takes = 0

    def take(self) -> list[Any]:
        self.takes += 1
        if not self.batches:
            time.sleep(0.005)  # an empty poll waits
            return []
        batch = self.batches.pop(0)
        self.next_offset = batch[-1] + 1
        return batch

    def positions(self) -> dict[int, int]:
        return {0: self.next_offset}


def prefetcher(consumer: FakeConsumer, prepare: Any = sum) -> Prefetcher[Any]:
    return Prefetcher(take=consumer.take, prepare=prepare, positions=consumer.positions, name="test-prefetch")


def test_batches_come_in_order_each_with_the_positions_right_after_it_was_taken() -> None:
    consumer = FakeConsumer([[0, 1, 2], [3], [4, 5]])
    fetching = prefetcher(consumer)
    fetching.start()
    try:
        items = [fetching.next(5.0) for _ in range(4)]
    finally:
        fetching.stop()
    assert [(item.messages, item.prepared, item.positions) for item in items[:3] if isinstance(item, Taken)] == [
        ([0, 1, 2], 3, {0: 3}),
        ([3], 3, {0: 4}),
        ([4, 5], 9, {0: 6}),
    ]
    assert items[3] == Idle({0: 6})


def test_the_positions_are_read_before_the_batch_is_prepared() -> None:
    """Preparing takes time while the consumer may move on (here: the fake moves its position
    while the batch is prepared); the item must carry the batch's own end."""
    consumer = FakeConsumer([[0, 1], [2, 3]])

    def prepare(batch: list[int]) -> int:
        consumer.next_offset += 100  # what a later read would see
        return len(batch)

    fetching = prefetcher(consumer, prepare)
    fetching.start()
    try:
        first = fetching.next(5.0)
    finally:
        fetching.stop()
    assert isinstance(first, Taken) and first.positions == {0: 2}


def test_an_error_while_taking_is_raised_in_the_writers_thread() -> None:
    def broken() -> list[Any]:
        raise RuntimeError("the broker refused the fetch")

    fetching = Prefetcher(take=broken, prepare=len, positions=dict, name="test-prefetch")
    fetching.start()
    try:
        with pytest.raises(PrefetchFailed, match="the broker refused the fetch") as raised:
            fetching.next(5.0)
        assert isinstance(raised.value.__cause__, RuntimeError)
    finally:
        fetching.stop()


def test_it_runs_at_most_one_waiting_batch_ahead_and_stops_while_the_writer_reads_nothing() -> None:
    consumer = FakeConsumer([[number] for number in range(100)])
    fetching = prefetcher(consumer)
    fetching.start()
    time.sleep(0.3)  # the writer reads nothing
    # One batch waits in the queue and one is held by the blocked handover.
    assert consumer.takes == BATCHES_WAITING_MAX + 1
    started = time.monotonic()
    fetching.stop()
    assert time.monotonic() - started < 2.0
    assert not any(thread.name == "test-prefetch" for thread in threading.enumerate())


def test_nothing_is_handed_over_twice_or_skipped_under_a_slow_writer() -> None:
    consumer = FakeConsumer([[number] for number in range(200)])
    fetching = prefetcher(consumer)
    fetching.start()
    received: list[int] = []
    try:
        for index in itertools.count():
            item = fetching.next(5.0)
            if isinstance(item, Idle):
                break
            if isinstance(item, Taken):
                received.extend(item.messages)
                if index % 7 == 0:
                    time.sleep(0.002)  # a slow write now and then
    finally:
        fetching.stop()
    assert received == list(range(200))


# -- the sink's loop around it: one thread at a time on the consumer -----------------------------


class OneCallAtATimeConsumer:
    """A stand-in for the sink's Kafka consumer (its partitions' messages, then empty polls)
    that records every call made while another call was still running. The Python client
    serializes calls on one consumer: an asynchronous commit from the writer's thread waited
    for the prefetching thread's poll to time out (200 ms), and the batch after it with it."""

    def __init__(self, batches: list[list[Any]]) -> None:
        self.batches = list(batches)
        self.overlaps: list[str] = []
        self.commits = 0
        self._busy = threading.Lock()
        self._next: dict[int, int] = {}

    def _call(self, name: str, seconds: float = 0.0) -> None:
        if not self._busy.acquire(blocking=False):
            self.overlaps.append(name)
            return
        try:
            time.sleep(seconds)
        finally:
            self._busy.release()

    def poll(self, timeout: float) -> Any:
        if not self.batches:
            self._call("poll", min(timeout, 0.02))
            return None
        self._call("poll")
        batch = self.batches.pop(0)
        for message in batch:
            self._next[message.partition()] = message.offset() + 1
        self._taken = batch[1:]
        return batch[0]

    def consume(self, count: int, timeout: float) -> list[Any]:
        self._call("consume")
        taken, self._taken = self._taken, []
        return taken

    def position(self, partitions: list[Any]) -> list[Any]:
        self._call("position")
        return [TopicPartition("streamwallet.events", partition, offset) for partition, offset in self._next.items()]

    def assignment(self) -> list[Any]:
        return []

    def commit(self, *, offsets: list[Any], asynchronous: bool) -> None:
        self._call("commit", 0.001)
        self.commits += 1

    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions=dict.fromkeys(range(PARTITIONS)))})

    def assign(self, partitions: list[Any]) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_writer_never_calls_the_consumer_while_the_prefetching_thread_does(
    clickhouse: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = Codec()
    batch = messages(generate(29, accounts=10, events=200), codec)
    fake = OneCallAtATimeConsumer([batch[start : start + 10] for start in range(0, len(batch), 10)])
    monkeypatch.setattr(events_module, "Consumer", lambda config: fake)
    monkeypatch.setattr(events_module, "last_stable_offsets", lambda admin, topic, partitions: {})
    target = sink(clickhouse, database, codec)
    stop = threading.Event()
    running = threading.Thread(target=target.run, args=(stop,))
    running.start()
    try:
        deadline = time.monotonic() + 30
        while target.metrics.events_written < len(batch) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # idle polls, and the progress stored (and committed) after them
    finally:
        stop.set()
        running.join(10)
    assert target.metrics.events_written == len(batch)
    assert fake.commits > 0
    assert fake.overlaps == []
