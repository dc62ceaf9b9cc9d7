"""Drive commands through a running stack and measure produce -> result latency.

The driver produces commands with confluent-kafka (murmur2 partitioner, acks=all) and
reads the results topic (read_committed) on a thread, timing each command from its
intended send time to the moment its result is consumed. In open-loop mode commands
are due at a fixed rate and a late send still counts from when it was due, so a
stalled system cannot hide its queueing (no coordinated omission).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.figures import Run, completed_run
from bench.processes import cpu_snapshot, cpu_used
from codec import Codec
from codec.bundling import bundle_of, by_partition
from foundation.consuming import retry_transient, take_available
from foundation.producing import produce_when_room
from foundation.settings import Settings
from ledger.commands import Command
from topologies import partition_for

OPEN_LOOP_TICK_S = 0.001
RESULTS_TIMEOUT_S = 300.0
RESULTS_POLL_S = 0.01


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in this process while a run is timed. A full collection over
    what the load generator holds (the run's commands, tens of thousands) paused its sending
    and its reading of results for up to half a second, and every result it held back was
    timed as the system's latency: in 40 s at 1,200 same-partition transfers/s, p99 128 ms
    and a maximum of 471 with the collector, 73 and 98 ms without it. What exists at the
    start is frozen (never scanned again) and the collector stays off until the run ends;
    reference counting still frees what the run drops (its objects hold no cycles)."""
    gc.collect()
    gc.freeze()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


class Driver:
    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self.settings = settings
        self.codec = codec or Codec()
        self._producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "partitioner": "murmur2_random",
                "acks": "all",
                "enable.idempotence": True,
                # librdkafka's default and the Java client's since Kafka 4.0, as the services
                # that send commands would run. At 1 ms the generator sent about one produce
                # request per command, and the broker's work for them (the same two cores)
                # was timed as the ledger's latency. The wait is inside every figure: commands
                # are timed from when they were due, not from when they left.
                "linger.ms": 5,
                "queue.buffering.max.messages": 2_000_000,
            }
        )
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "group.id": f"{settings.topic_prefix}.bench",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                # The broker answers a waiting fetch as soon as a commit's markers make results
                # readable, so this bounds only the empty fetches between commits (at 2 ms,
                # hundreds a second; latency at 1,150/s unchanged at 100).
                "fetch.wait.max.ms": 100,
            }
        )
        topic = f"{settings.topic_prefix}.results"
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, self._end_offset(topic, p)) for p in partitions])
        self._sent: dict[str, float] = {}
        self._done: dict[str, tuple[float, bytes]] = {}  # command id -> (received at, the result's bytes)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _end_offset(self, topic: str, partition: int) -> int:
        """Where the results topic ends now (retried while a new topic's leadership settles)."""
        watermarks = retry_transient(
            lambda: self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        )
        end: int = watermarks[1]
        return end

    def close(self) -> None:
        self._stop.set()
        self._reader.join(5)
        self._consumer.close()

    def _read(self) -> None:
        while not self._stop.is_set():
            messages = take_available(self._consumer, 10_000, 0.02)
            now = time.perf_counter()
            for message in messages:
                key = message.key()
                if message.error() is None and key is not None:
                    command_id = key.decode()
                    with self._lock:
                        if command_id in self._sent:
                            self._done[command_id] = (now, message.value() or b"")

    def run(
        self,
        name: str,
        commands: Sequence[Command],
        *,
        rate_per_s: float | None = None,
        timeout_s: float = RESULTS_TIMEOUT_S,
        processes: Mapping[str, int] | None = None,
        bundle_size: int = 1,
    ) -> Run:
        """Closed loop (as fast as possible) when rate_per_s is None, else open loop. With
        `processes` (name -> pid), the run carries the CPU each used from the first send
        to the last result. With `bundle_size` > 1, commands go in bundles of up to that
        many (bulk submit, one bundle per partition's run of commands); each command is
        still timed and checked on its own. Fails with MissingResults unless every command
        has its result."""
        encoded = self._messages(commands, bundle_size)
        with collector_paused():
            cpu_before = cpu_snapshot(processes or {})
            started = time.perf_counter()
            intended = self._send(encoded, started=started, rate_per_s=rate_per_s)
            self._producer.flush(timeout_s)
            deadline = time.perf_counter() + timeout_s
            while time.perf_counter() < deadline:
                with self._lock:
                    if all(command_id in self._done for command_id in intended):
                        break
                time.sleep(RESULTS_POLL_S)
        with self._lock:
            done = {command_id: self._done.pop(command_id) for command_id in intended if command_id in self._done}
            for command_id in intended:
                self._sent.pop(command_id, None)
        results = [self.codec.decode_record(value) for _, value in done.values()]
        codes = collections.Counter(str(result["code"]) for result in results if result["status"] == "REJECTED")
        run = completed_run(
            name,
            sent=intended,
            received={command_id: at for command_id, (at, _) in done.items()},
            started=started,
            waited_s=timeout_s,
            rejected=codes.total(),
            rejected_codes=codes,
        )
        return dataclasses.replace(run, cpu_s=cpu_used(processes or {}, since=cpu_before))

    def _messages(self, commands: Sequence[Command], bundle_size: int) -> list[tuple[tuple[str, ...], bytes, bytes]]:
        """(the command ids, key, value) of each message: a command, or a bundle of commands
        of one partition, in the order their first command comes."""
        if bundle_size <= 1:
            return [
                ((command.command_id,), command.routing_key.encode(), self.codec.encode(command))
                for command in commands
            ]
        partitions = self.settings.partitions
        grouped = by_partition(commands, partition_of=lambda key: partition_for(key, partitions), size=bundle_size)
        return [
            (
                tuple(command.command_id for command in bundle),
                bundle[0].routing_key.encode(),
                self.codec.encode(bundle_of(self.codec, f"bundle-{bundle[0].command_id}"[:64], bundle)),
            )
            for bundle in grouped
        ]

    def _send(
        self, encoded: Sequence[tuple[tuple[str, ...], bytes, bytes]], *, started: float, rate_per_s: float | None
    ) -> dict[str, float]:
        """Produce every command when it is due; command id -> its intended send time."""
        topic = f"{self.settings.topic_prefix}.commands"
        intended: dict[str, float] = {}
        index = 0
        while index < len(encoded):
            # Wake at most every OPEN_LOOP_TICK_S and send everything due by then: a sleep per
            # command would cost the load generator more CPU than the system under test.
            now = time.perf_counter()
            due_count = len(encoded) if not rate_per_s else min(len(encoded), int((now - started) * rate_per_s) + 1)
            if due_count <= index and rate_per_s:  # open loop only: a closed loop is always due
                time.sleep(min(OPEN_LOOP_TICK_S, (index / rate_per_s + started) - now))
                continue
            with self._lock:
                for position in range(index, due_count):
                    due = started + position / rate_per_s if rate_per_s else now
                    for command_id in encoded[position][0]:
                        intended[command_id] = due
                        self._sent[command_id] = due
            for position in range(index, due_count):
                _, key, value = encoded[position]
                produce_when_room(self._producer, topic, value, key, wait_s=0.005)
            self._producer.poll(0)
            index = due_count
        return intended
