"""Test helpers that read what the system wrote to Kafka."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from codec import Codec
from foundation.settings import Settings
from ledger.events import CommandResult
from streams.processor import LedgerProcessor

PROCESSOR_READY_TIMEOUT_S = 60
PROCESSOR_STOP_TIMEOUT_S = 30


@contextlib.contextmanager
def running_processor(settings: Settings) -> Iterator[LedgerProcessor]:
    """The ledger loop in this process, on a thread, until the block ends (the e2e tests
    run it as a separate process)."""
    processor = LedgerProcessor(settings)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,))
    thread.start()
    try:
        assert processor.ready.wait(PROCESSOR_READY_TIMEOUT_S)
        yield processor
    finally:
        stop.set()
        thread.join(PROCESSOR_STOP_TIMEOUT_S)


def read_topic(bootstrap_servers: str, topic: str, *, timeout_s: float = 30.0) -> list[Any]:
    """Every committed message of a topic (read_committed), from the beginning to its end
    as it is when called: a list of confluent Message objects."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        pending = {p for p in partitions if ends[p] > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=0.5):
                error = message.error()
                if error is None:
                    messages.append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
        assert not pending, f"could not read {topic} to its end within {timeout_s}s (partitions {pending})"
        return messages
    finally:
        consumer.close()


def outcome(result: CommandResult) -> tuple[str, str | None, bool]:
    """(status, code, replayed) of a result, as plain values for comparisons."""
    return result.status.value, None if result.code is None else result.code.value, result.replayed


def read_decoded(bootstrap_servers: str, topic: str, codec: Codec) -> list[Any]:
    return [codec.decode(message.value()) for message in read_topic(bootstrap_servers, topic)]
