"""Reading what the system wrote to Kafka: a topic to its end, the shards' tables as the
changelog holds them, and a topic's outputs as they arrive (to wait for answers).

Every reader is read_committed: what a transaction aborted never counts."""

from __future__ import annotations

import collections
import functools
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from codec import Codec
from foundation.clients import kafka_config
from foundation.consuming import retry_transient, take_available
from foundation.settings import Settings
from ledger.state import Table

READ_TO_END_TIMEOUT_S = 30.0
METADATA_TIMEOUT_S = 10.0
METADATA_RETRY_S = 0.1
OUTPUTS_BATCH_MAX = 10_000
OUTPUTS_WAIT_S = 0.05
ANSWER_POLL_S = 0.01


class TopicNotRead(TimeoutError):
    """A topic could not be read to its end in time."""


def _committed_reader(source: str | Settings, **extra: Any) -> Consumer:
    """A read_committed consumer. `source` is a (plaintext) bootstrap address, or the
    settings of a user who may read the topic (a secured cluster)."""
    client = {"bootstrap.servers": source} if isinstance(source, str) else kafka_config(source)
    return Consumer(
        {
            **client,
            "group.id": f"bench-reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **extra,
        }
    )


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    """The topic's partitions, once the broker's metadata knows them (a topic just created
    may be unknown for a moment; assigning none of its partitions would read nothing)."""
    deadline = time.monotonic() + METADATA_TIMEOUT_S
    while True:
        metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics[topic]
        if metadata.error is None and metadata.partitions:
            return sorted(metadata.partitions)
        if time.monotonic() >= deadline:
            raise TopicNotRead(f"{topic} has no partitions in the broker's metadata: {metadata.error}")
        time.sleep(METADATA_RETRY_S)


def read_topic(
    source: str | Settings,
    topic: str,
    *,
    timeout_s: float = READ_TO_END_TIMEOUT_S,
    start: Mapping[int, int] | None = None,
) -> list[Any]:
    """Every committed message of a topic (read_committed), from the beginning to its end
    as it is when called: a list of confluent Message objects. `source`: a bootstrap
    address, or the settings of a user who may read the topic. `start`: per partition, the
    offset to read from instead of the beginning (`after(messages)` of an earlier read)."""
    consumer = _committed_reader(source, **{"enable.partition.eof": True})
    try:
        partitions = _partitions(consumer, topic)

        # Retried while leadership moves (a broker lost in a fault test): NOT_LEADER and the like.
        def end_of(partition: int) -> int:
            high: int = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_S)[1]
            return high

        ends = {p: retry_transient(functools.partial(end_of, p), budget_s=READ_TO_END_TIMEOUT_S) for p in partitions}
        first = start or {}
        pending = {p for p in partitions if ends[p] > first.get(p, 0)}
        consumer.assign([TopicPartition(topic, p, first.get(p, 0)) for p in partitions])
        messages: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=0.5):
                error = message.error()
                if error is None:
                    messages.append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
        if pending:
            raise TopicNotRead(f"could not read {topic} to its end within {timeout_s}s (partitions {sorted(pending)})")
        return messages
    finally:
        consumer.close()


def after(messages: Iterable[Any], start: Mapping[int, int] | None = None) -> dict[int, int]:
    """Per partition, the offset after the last of `messages` (or `start`'s where none was
    read): where the next `read_topic` of the same topic starts to read only what is new."""
    offsets = dict(start or {})
    for message in messages:
        offsets[message.partition()] = max(offsets.get(message.partition(), 0), message.offset() + 1)
    return offsets


def read_decoded(
    source: str | Settings, topic: str, codec: Codec, *, timeout_s: float = READ_TO_END_TIMEOUT_S
) -> list[Any]:
    return [codec.decode(message.value()) for message in read_topic(source, topic, timeout_s=timeout_s)]


_TABLE_LETTERS = frozenset(table.value for table in Table)


def changelog_state(
    settings: Settings,
    codec: Codec,
    *,
    timeout_s: float = READ_TO_END_TIMEOUT_S,
    tables: Collection[Table] | None = None,
) -> dict[Table, dict[str, Any]]:
    """The shards' tables as the changelog holds them (latest value per key): what a
    worker restores, and so what the tables hold. `tables`: only these (all where None).
    Only each key's latest value is decoded: an account's record is rewritten by every
    change to it, and a long fault test's changelog holds hundreds of thousands."""
    wanted = _TABLE_LETTERS if tables is None else frozenset(table.value for table in tables)
    latest: dict[Table, dict[str, bytes | None]] = collections.defaultdict(dict)
    for message in read_topic(settings.bootstrap_servers, f"{settings.topic_prefix}.changelog", timeout_s=timeout_s):
        raw_key = message.key().decode()
        if raw_key[0] not in wanted:
            continue  # the loop's own records (input positions), or a table not asked for
        latest[Table(raw_key[0])][raw_key[1:]] = message.value()
    state: dict[Table, dict[str, Any]] = collections.defaultdict(dict)
    for table, values in latest.items():
        state[table] = {key: codec.decode(value) for key, value in values.items() if value is not None}
    return state


class Outputs:
    """A topic's outputs as they arrive, on a thread: when each id (as `id_of` finds it in a
    message) was first seen, and how often. Reads every partition from offset 0."""

    def __init__(self, bootstrap_servers: str, topic: str, *, id_of: Callable[[Any], bytes | None]) -> None:
        self._consumer = _committed_reader(bootstrap_servers, **{"fetch.wait.max.ms": 2})
        self._consumer.assign([TopicPartition(topic, p, 0) for p in _partitions(self._consumer, topic)])
        self._id_of = id_of
        self.first_seen: dict[bytes, float] = {}  # id -> time.perf_counter() when first consumed
        self.count: collections.Counter[bytes] = collections.Counter()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"outputs of {topic}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            messages = take_available(self._consumer, OUTPUTS_BATCH_MAX, OUTPUTS_WAIT_S)
            now = time.perf_counter()
            for message in messages:
                if message.error() is not None:
                    continue
                output_id = self._id_of(message)
                if output_id is not None:
                    self.first_seen.setdefault(output_id, now)
                    self.count[output_id] += 1

    def wait_for(
        self, ids: Iterable[bytes], *, timeout_s: float, still_worth_waiting: Callable[[], bool] = lambda: True
    ) -> bool:
        """True once every id has been seen; False after `timeout_s`, or as soon as
        `still_worth_waiting()` says no (the process that would answer has exited)."""
        missing = list(ids)
        deadline = time.monotonic() + timeout_s
        while True:
            missing = [output_id for output_id in missing if output_id not in self.first_seen]
            if not missing:
                return True
            if time.monotonic() >= deadline or not still_worth_waiting():
                return False
            time.sleep(ANSWER_POLL_S)

    def close(self) -> None:
        self._stop.set()
        self._reader.join(METADATA_TIMEOUT_S)
        self._consumer.close()
