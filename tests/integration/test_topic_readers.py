"""The topic readers the checker and the benchmarks count with (bench/topics.py): a read
that starts where an earlier one stopped returns exactly what was committed since, however
transactions left their markers and aborted records behind."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.topics import after, read_topic

pytestmark = pytest.mark.kafka

PARTITIONS = 3


def _transaction(producer: Producer, topic: str, values: list[tuple[int, bytes]], *, commit: bool) -> None:
    producer.begin_transaction()
    for partition, value in values:
        producer.produce(topic, value, partition=partition)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def test_a_read_from_where_the_last_stopped_returns_only_what_was_committed_since(kafka_bootstrap: str) -> None:
    topic = f"readers-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})  # kept alive until the topic exists
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{topic}"})
    producer.init_transactions(30)
    _transaction(producer, topic, [(0, b"a0"), (0, b"a1"), (1, b"a2")], commit=True)
    _transaction(producer, topic, [(0, b"aborted-0"), (2, b"aborted-1")], commit=False)

    first = read_topic(kafka_bootstrap, topic)
    assert sorted(message.value() for message in first) == [b"a0", b"a1", b"a2"]
    start = after(first)
    # Partition 0 ends with an abort marker after its records, partition 2 holds only aborted
    # records and a marker: neither may make the next read wait, or return anything again.
    assert read_topic(kafka_bootstrap, topic, start=start, timeout_s=10) == []
    assert after([], start) == start

    _transaction(producer, topic, [(0, b"b0"), (2, b"b1")], commit=True)
    _transaction(producer, topic, [(1, b"aborted-2")], commit=False)
    _transaction(producer, topic, [(1, b"b2")], commit=True)
    second = read_topic(kafka_bootstrap, topic, start=start, timeout_s=10)
    assert sorted(message.value() for message in second) == [b"b0", b"b1", b"b2"]
    assert sorted(message.value() for message in first + second) == sorted(
        message.value() for message in read_topic(kafka_bootstrap, topic)
    )
    assert read_topic(kafka_bootstrap, topic, start=after(second, start), timeout_s=10) == []
