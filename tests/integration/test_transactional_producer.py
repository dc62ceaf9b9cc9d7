"""The worker's transactional producer against a real broker: what it says when it fails."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from codec import Codec
from foundation.settings import Settings
from ledger import commands
from streams.clients import TRANSACTION_LINGER_MS, producer_config
from streams.transactions import TransactionalProducer
from tests.checker import wait_for_results
from tests.client_statistics import ClientStatistics
from tests.principals import TESTER
from tests.support import running_processor

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
    statistics = ClientStatistics(interval_ms=100)
    transactions = TransactionalProducer(
        {**producer_config(settings), **statistics.options()}, init_timeout_s=30, budget_s=60
    )
    producer = transactions.producer

    def produce_requests() -> int:
        """As a report made from now on counts them."""
        latest = statistics.next_report(after=len(statistics.reports) - 1, serve=lambda: producer.poll(0.05))
        return statistics.requests(latest, "Produce")[1]

    transactions.begin()
    # The partitions join the transaction first: until its AddPartitionsToTxn is answered no
    # record may leave, which would hold back a trickle too and hide it.
    for partition in range(partitions):
        producer.produce(topic, b"joins", partition=partition)
    producer.flush(30)
    before = produce_requests()
    started_s = time.monotonic()
    for burst in range(5):  # 5 ms apart, as a batch is decided
        if burst:
            time.sleep(0.005)
        for index in range(60):
            producer.produce(topic, b"x" * 100, partition=index % partitions)
    deciding_ms = (time.monotonic() - started_s) * 1000
    producer.commit_transaction(30)
    sent = produce_requests() - before
    assert sent == partitions, (
        f"{sent} produce requests for {partitions} partitions "
        f"({deciding_ms:.0f} ms deciding, linger {TRANSACTION_LINGER_MS} ms)"
    )


def test_a_producer_fenced_while_its_records_wait_raises_its_fatal_error_from_abort(settings: Settings) -> None:
    """Defect (a fresh-clone CI run, the broker-loss test): a worker whose transaction failed
    aborts it, and the abort first flushes what is queued. Its producer had been fenced (the
    coordinator bumped the epoch while a broker was away), so the flush met the fatal error
    and then served the records' delivery reports: confluent-kafka 2.16 calls the Python
    callback with its KafkaException still set, and flush() raised SystemError ("returned a
    result with an exception set"). The worker catches KafkaException there (it replaces the
    producer and reloads its partitions); the SystemError stopped it instead. Here the
    records wait in the queue (a long linger) while a second instance fences the first."""
    topic = f"fenced-flush-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result()
    # The staged records wait for the flush (a linger below message.timeout.ms, which a
    # transactional producer holds to the transaction timeout).
    config = {**producer_config(settings), "linger.ms": settings.transaction_timeout_ms - 1_000}
    transactions = TransactionalProducer(config, init_timeout_s=30, budget_s=60)
    transactions.begin()
    transactions.producer.produce(topic, b"joins", b"k")  # the partition joins the transaction now
    transactions.producer.flush(30)
    reports: list[KafkaError | None] = []
    for _ in range(20):  # as the worker stages changelog records: each with a delivery report
        transactions.producer.produce(topic, b"staged", b"k", on_delivery=lambda error, _: reports.append(error))
    usurper = Producer({key: value for key, value in config.items() if key != "logger"})
    usurper.init_transactions(30)  # bumps the epoch: the staged records are refused when they leave
    with pytest.raises(KafkaException) as failed:
        transactions.abort(10)
    error = failed.value.args[0]
    assert error.fatal() and error.code() == KafkaError._FENCED, error


class CommitWatcher:
    """The worker's real transactional producer; notes, as each commit starts, how many records
    are still waiting in the client to be sent or acknowledged."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self.waiting: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def commit_transaction(self, *args: Any) -> None:
        self.waiting.append(len(self._producer))
        self._producer.commit_transaction(*args)


def test_a_transactions_records_have_left_before_its_commit_starts(settings: Settings) -> None:
    """The loop flushes a transaction's records beside the offsets' call, which may still be
    running: they linger until then (one produce request per partition), and the commit is left
    with EndTxn alone to wait for, not the produce round trip after the offsets' ones."""
    codec = Codec()
    run = uuid.uuid4().hex[:6]
    workload = [
        commands.OpenAccount(
            principal=TESTER,
            owner=TESTER.principal_id,
            command_id=f"{run}-o{index}",
            dedup_id="o",
            account_id=f"{run}-{index}",
            currency="USD",
        )
        for index in range(200)
    ]
    with running_processor(settings) as processor:
        watcher = CommitWatcher(processor._producer)
        processor._producer = watcher  # between transactions: the loop is idle, waiting for input
        producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
        for index, command in enumerate(workload):
            producer.produce(f"{settings.topic_prefix}.commands", codec.encode(command), command.routing_key.encode())
            if index % 20 == 0:
                producer.flush(10)  # in several transactions
        assert producer.flush(10) == 0
        results = wait_for_results(settings, codec, {command.command_id for command in workload})
    assert len(results) == len(workload)
    assert len(watcher.waiting) >= 2, "the commits were not watched"
    assert set(watcher.waiting) == {0}, f"records still waiting as commits started: {watcher.waiting}"
