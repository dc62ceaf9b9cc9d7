"""The worker's transactional producer against a real broker: what it says when it fails."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from foundation.settings import Settings
from streams.clients import TRANSACTION_LINGER_MS, producer_config
from streams.transactions import TransactionalProducer

pytestmark = pytest.mark.kafka


def test_a_replaced_producer_logs_why_it_failed(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """Defect: in the million-command soak a worker's producer failed fatally 18 times and the
    log said only "Unable to produce message: Local: Fatal error". librdkafka hands the reason
    to the log callback, which runs only when the instance is polled, and the failed instance
    was dropped unpolled. Here it is fenced by a second instance of its transactional id."""
    topic = f"fatal-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result()
    config = producer_config(settings)
    transactions = TransactionalProducer(config, init_timeout_s=30, budget_s=60)
    usurper = Producer({key: value for key, value in config.items() if key != "logger"})
    usurper.init_transactions(30)  # bumps the epoch: the first instance is fenced
    transactions.begin()
    transactions.producer.produce(topic, b"fenced", b"k")  # its partition registration is refused
    deadline = time.monotonic() + 30
    with pytest.raises(KafkaException) as failed:  # as the worker meets it: produce() says only "fatal"
        while time.monotonic() < deadline:
            transactions.producer.produce(topic, b"after", b"k")
            time.sleep(0.05)
    assert failed.value.args[0].code() == KafkaError._FATAL, failed.value
    with caplog.at_level(logging.DEBUG):
        transactions.replace("fenced in the test")
    reasons = [record.getMessage() for record in caplog.records if record.name == "librdkafka"]
    assert any("FATAL" in reason and "fenced" in reason.lower() for reason in reasons), reasons
    ours = [record.getMessage() for record in caplog.records if record.name == "streams.transactions"]
    assert any("reason" in line and "fenced" in line for line in ours), ours


def test_a_transaction_reaches_the_broker_as_one_produce_request_per_partition(settings: Settings) -> None:
    """Defect (issue 15): with linger.ms=2 the worker sent each partition's records in a
    trickle of small produce requests while it decided a batch (3,091 produce requests/s for
    1,800 transfers/s, counting the generator's), and the broker's CPU for them, on the same
    two cores, set the open-loop tail. A transaction is flushed by its commit anyway: its
    records wait for it and leave in one request per partition."""
    partitions = 3
    topic = f"requests-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result()
    statistics: list[dict[str, Any]] = []
    config = {
        **producer_config(settings),
        "statistics.interval.ms": 100,
        "stats_cb": lambda text: statistics.append(json.loads(text)),
    }
    transactions = TransactionalProducer(config, init_timeout_s=30, budget_s=60)
    producer = transactions.producer

    def produce_requests() -> int:
        statistics.clear()
        deadline_s = time.monotonic() + 30
        while not statistics and time.monotonic() < deadline_s:
            producer.poll(0.05)
        assert statistics, "librdkafka reported no statistics within 30 s"
        return sum(broker["req"].get("Produce", 0) for broker in statistics[-1]["brokers"].values())

    before = produce_requests()
    transactions.begin()
    started_s = time.monotonic()
    for index in range(300):  # spread over about 15 ms, as a batch is decided
        producer.produce(topic, b"x" * 100, partition=index % partitions)
        if index % 60 == 0:
            time.sleep(0.003)
    deciding_ms = (time.monotonic() - started_s) * 1000
    producer.commit_transaction(30)
    sent = produce_requests() - before
    assert sent == partitions, (
        f"{sent} produce requests for {partitions} partitions "
        f"({deciding_ms:.0f} ms deciding, linger {TRANSACTION_LINGER_MS} ms)"
    )
