"""Test helpers that read what the system wrote to Kafka."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from codec import Codec
from foundation.clients import kafka_config
from foundation.settings import Settings
from ledger.events import CommandResult


def read_topic(source: str | Settings, topic: str, *, timeout_s: float = 30.0) -> list[Any]:
    """Every committed message of a topic (read_committed), from the beginning to its end
    as it is when called: a list of confluent Message objects. `source` is a (plaintext)
    bootstrap address, or the settings of a user who may read the topic."""
    client = {"bootstrap.servers": source} if isinstance(source, str) else kafka_config(source)
    consumer = Consumer(
        {
            **client,
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


def read_decoded(source: str | Settings, topic: str, codec: Codec) -> list[Any]:
    return [codec.decode(message.value()) for message in read_topic(source, topic)]
