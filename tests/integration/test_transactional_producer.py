"""The worker's transactional producer against a real broker: what it says when it fails."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from foundation.settings import Settings
from streams.clients import producer_config
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
