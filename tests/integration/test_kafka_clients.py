"""The broker version is chosen by these: confluent-kafka (admin, transactional producer
with KIP-447 offsets, consumer group with subscribe) and aiokafka, Faust's client
(transactions, read_committed), against the project's own broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

pytestmark = pytest.mark.kafka


def _topics(bootstrap: str, *names: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, 4, 1) for name in names]).values():
        future.result()


def test_confluent_kafka_transactional_consume_process_produce(kafka_bootstrap: str) -> None:
    source, sink = f"src-{uuid.uuid4().hex[:6]}", f"dst-{uuid.uuid4().hex[:6]}"
    _topics(kafka_bootstrap, source, sink)
    plain = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    for index in range(100):
        plain.produce(source, str(index).encode(), f"k{index}".encode())
    plain.flush(10)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"g-{source}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{source}"})
    producer.init_transactions(30)
    copied = 0
    deadline = time.monotonic() + 30
    while copied < 100 and time.monotonic() < deadline:
        messages = consumer.consume(100, 1.0)
        if not messages:
            continue
        producer.begin_transaction()
        for message in messages:
            producer.produce(sink, message.value(), message.key())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)
        copied += len(messages)
    producer.begin_transaction()
    producer.produce(sink, b"aborted", b"x")
    producer.abort_transaction(30)
    consumer.close()
    reader = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"r-{sink}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    reader.assign([TopicPartition(sink, partition, 0) for partition in range(4)])
    values: list[Any] = []
    eof: set[int | None] = set()
    deadline = time.monotonic() + 30
    while len(eof) < 4 and time.monotonic() < deadline:
        for message in reader.consume(500, 0.5):
            if message.error() is None:
                values.append(message.value())
            else:
                eof.add(message.partition())
    reader.close()
    assert copied == 100
    assert sorted(values) == sorted(str(index).encode() for index in range(100))


def test_aiokafka_transactions_and_read_committed(kafka_bootstrap: str) -> None:
    topic = f"aio-{uuid.uuid4().hex[:6]}"
    _topics(kafka_bootstrap, topic)

    async def scenario() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"aio-{topic}")
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed", key=b"k")
            with pytest.raises(RuntimeError):
                async with producer.transaction():
                    await producer.send_and_wait(topic, b"aborted", key=b"k")
                    raise RuntimeError("abort")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, isolation_level="read_committed", auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=5000)
            return [message.value for messages in batch.values() for message in messages]
        finally:
            await consumer.stop()

    assert asyncio.run(scenario()) == [b"committed"]
