"""Drive commands through a running stack and measure produce -> result latency.

The driver produces commands with confluent-kafka (murmur2 partitioner, acks=all) and
reads the results topic (read_committed) on a thread, timing each command from its
intended send time to the moment its result is consumed. In open-loop mode commands
are due at a fixed rate and a late send still counts from when it was due, so a
stalled system cannot hide its queueing (no coordinated omission).
"""

from __future__ import annotations

import dataclasses
import resource
import threading
import time
from collections.abc import Iterable, Sequence

from confluent_kafka import Consumer, Producer, TopicPartition

from codec import Codec
from foundation.consuming import take_available
from foundation.producing import produce_when_room
from foundation.settings import Settings
from ledger.commands import Command


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The exact percentile of the samples (nan without samples)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def latency_summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 0.50), 2),
        "p99_ms": round(percentile(samples, 0.99), 2),
        "max_ms": round(max(samples), 2),
    }


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    name: str
    commands: int
    seconds: float
    latencies_ms: list[float]
    rejected: int

    @property
    def throughput(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        return percentile(self.latencies_ms, fraction)

    def summary(self) -> dict[str, float | int | str]:
        return {
            "name": self.name,
            "commands": self.commands,
            "seconds": round(self.seconds, 3),
            "throughput_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile(0.50), 2),
            "p90_ms": round(self.percentile(0.90), 2),
            "p99_ms": round(self.percentile(0.99), 2),
            "p999_ms": round(self.percentile(0.999), 2),
            "max_ms": round(max(self.latencies_ms, default=float("nan")), 2),
            "rejected": self.rejected,
        }


OPEN_LOOP_TICK_S = 0.001


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
                "linger.ms": 1,
                "queue.buffering.max.messages": 2_000_000,
            }
        )
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "group.id": f"{settings.topic_prefix}.bench",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 2,
            }
        )
        topic = f"{settings.topic_prefix}.results"
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign(
            [
                TopicPartition(topic, p, self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in partitions
            ]
        )
        self._sent: dict[str, float] = {}
        self._done: dict[str, tuple[float, bytes]] = {}  # command id -> (received at, the result's bytes)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

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
        timeout_s: float = 300.0,
    ) -> Run:
        """Closed loop (as fast as possible) when rate_per_s is None, else open loop."""
        encoded = [
            (command.command_id, command.routing_key.encode(), self.codec.encode(command)) for command in commands
        ]
        topic = f"{self.settings.topic_prefix}.commands"
        started = time.perf_counter()
        intended: dict[str, float] = {}
        index = 0
        while index < len(encoded):
            # Wake at most every OPEN_LOOP_TICK_S and send everything due by then: a sleep per
            # command would cost the load generator more CPU than the system under test.
            now = time.perf_counter()
            due_count = len(encoded) if not rate_per_s else min(len(encoded), int((now - started) * rate_per_s) + 1)
            if due_count <= index:  # open loop only: a closed loop is always due
                assert rate_per_s
                time.sleep(min(OPEN_LOOP_TICK_S, (index / rate_per_s + started) - now))
                continue
            with self._lock:
                for position in range(index, due_count):
                    command_id = encoded[position][0]
                    due = started + position / rate_per_s if rate_per_s else now
                    intended[command_id] = due
                    self._sent[command_id] = due
            for position in range(index, due_count):
                _, key, value = encoded[position]
                produce_when_room(self._producer, topic, value, key, wait_s=0.005)
            self._producer.poll(0)
            index = due_count
        self._producer.flush(timeout_s)
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            with self._lock:
                if all(command_id in self._done for command_id in intended):
                    break
            time.sleep(0.01)
        with self._lock:
            finished = [self._done[command_id] for command_id in intended if command_id in self._done]
            missing = len(intended) - len(finished)
            latencies = [
                (self._done[command_id][0] - due) * 1000
                for command_id, due in intended.items()
                if command_id in self._done
            ]
            for command_id in intended:
                self._sent.pop(command_id, None)
                self._done.pop(command_id, None)
        if missing:
            raise TimeoutError(f"{name}: {missing} of {len(intended)} results missing after {timeout_s}s")
        elapsed = max(at for at, _ in finished) - started
        rejected = sum(self.codec.decode_record(value)["status"] == "REJECTED" for _, value in finished)
        return Run(name=name, commands=len(intended), seconds=elapsed, latencies_ms=latencies, rejected=rejected)


def peak_rss_mb_of(pids: Iterable[int]) -> dict[int, float]:
    """Peak resident set (VmHWM) of running processes, in MiB."""
    peaks = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peaks[pid] = int(line.split()[1]) / 1024
        except FileNotFoundError:
            continue
    return peaks


def cpu_seconds_of(pids: Iterable[int]) -> float:
    """User + system CPU seconds of running processes (from /proc/<pid>/stat)."""
    ticks = resource.getpagesize() and __import__("os").sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
        except FileNotFoundError:
            continue
    return total
