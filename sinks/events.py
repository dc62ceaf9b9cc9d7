"""The events sink: AccountEvents from Kafka into ClickHouse, idempotently.

Commit order (one place): consume a bounded batch (read_committed, so aborted
transactions never show) -> insert it -> commit the consumed offsets. A crash after the
insert and before the commit redelivers the batch, and its rows collapse onto the ones
already written (same account_id and sequence: ReplacingMergeTree, argMax in views).
Nothing is acknowledged before it is written, so nothing is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from codec import Codec, DecodeError, DecodeErrorCode
from codec.deadletter import DEAD_LETTER_VALUE_BYTES_MAX, DeadLetter
from ledger.events import AccountEvent
from streamwallet.settings import Settings
from topologies import Topology

log = logging.getLogger(__name__)

EVENT_COLUMNS = [
    "account_id",
    "sequence",
    "kind",
    "amount",
    "held_change",
    "currency",
    "balance",
    "held",
    "available",
    "pending_in",
    "pending_out",
    "lower_limit",
    "upper_limit",
    "status",
    "parent_account_id",
    "metadata",
    "command_id",
    "dedup_id",
    "correlation_id",
    "counterparty_account_id",
    "code",
    "occurred_at",
    "kafka_partition",
    "kafka_offset",
]
LAG_REFRESH_S = 0.5


def event_row(event: AccountEvent, partition: int, offset: int) -> list[Any]:
    return [
        event.account_id,
        event.sequence,
        event.kind.value,
        event.amount,
        event.held_change,
        event.currency,
        event.balance,
        event.held,
        event.available,
        event.pending_in,
        event.pending_out,
        event.lower_limit,
        event.upper_limit,
        event.status.value,
        event.parent_account_id,
        event.metadata or {},
        event.command_id,
        event.dedup_id,
        event.correlation_id,
        event.counterparty_account_id,
        None if event.code is None else event.code.value,
        event.occurred_at_ms,
        partition,
        offset,
    ]


@dataclasses.dataclass(slots=True)
class SinkMetrics:
    events_written: int = 0
    batches: int = 0
    dead_letters: int = 0
    lag: dict[int, int] = dataclasses.field(default_factory=dict)  # partition -> events not yet written
    caught_up: bool = False  # the lag reached zero once since start
    last_batch_seconds: float = 0.0


class EventSink:
    def __init__(
        self,
        settings: Settings,
        client: Any,
        *,
        codec: Codec | None = None,
        on_written: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.codec = codec or Codec()
        self.on_written = on_written
        self.topology = Topology(prefix=settings.topic_prefix, partitions=settings.partitions)
        self.table = f"{settings.clickhouse_database}.account_events"
        self.metrics = SinkMetrics()

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": f"{self.settings.topic_prefix}.sink",
                "client.id": f"{self.settings.worker_id}-sink",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 20,
            }
        )
        dead_letters = Producer(
            {"bootstrap.servers": self.settings.bootstrap_servers, "acks": "all", "enable.idempotence": True}
        )
        consumer.subscribe([self.topology.events.name])
        next_lag_refresh = 0.0
        try:
            while not stop.is_set():
                messages = consumer.consume(
                    num_messages=self.settings.sink_batch_events, timeout=self.settings.sink_flush_interval_ms / 1000
                )
                if messages:
                    self._write(consumer, dead_letters, messages)
                if time.monotonic() >= next_lag_refresh:
                    next_lag_refresh = time.monotonic() + LAG_REFRESH_S
                    self._refresh_lag(consumer)
        finally:
            consumer.close()
            dead_letters.flush(5)

    def _write(self, consumer: Consumer, dead_letters: Producer, messages: list[Message]) -> None:
        started = time.monotonic()
        rows: list[list[Any]] = []
        offsets: dict[int, int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None
            offsets[partition] = offset + 1
            try:
                event = self.codec.decode(message.value() or b"", expected=(AccountEvent,))
            except DecodeError as decode_error:
                self._dead_letter(dead_letters, message, decode_error)
                continue
            rows.append(event_row(event, partition, offset))
        if rows:
            self.client.insert(self.table, rows, column_names=EVENT_COLUMNS)
        dead_letters.flush(10)
        topic = self.topology.events.name
        consumer.commit(
            offsets=[TopicPartition(topic, partition, offset) for partition, offset in offsets.items()],
            asynchronous=False,
        )
        self.metrics.events_written += len(rows)
        self.metrics.batches += 1
        self.metrics.last_batch_seconds = time.monotonic() - started
        self.on_written()

    def _dead_letter(self, producer: Producer, message: Message, error: DecodeError) -> None:
        value = message.value()
        letter = DeadLetter(
            source_topic=message.topic() or "",
            source_partition=message.partition() or 0,
            source_offset=message.offset() or 0,
            key=message.key(),
            value=None if value is None else value[:DEAD_LETTER_VALUE_BYTES_MAX],
            reason_code=error.code.value if isinstance(error.code, DecodeErrorCode) else str(error.code),
            reason=f"sink: {error.reason}",
            worker_id=f"{self.settings.worker_id}-sink",
            failed_at_ms=int(time.time() * 1000),
        )
        log.warning(
            "event at %s/%s@%s cannot be decoded: %s",
            letter.source_topic,
            letter.source_partition,
            letter.source_offset,
            error,
        )
        producer.produce(self.topology.deadletter.name, self.codec.encode(letter), key=message.key())
        self.metrics.dead_letters += 1

    def _refresh_lag(self, consumer: Consumer) -> None:
        assignment = consumer.assignment()
        if not assignment:
            return
        lag: dict[int, int] = {}
        for position in consumer.position(assignment):
            _, high = consumer.get_watermark_offsets(position, cached=False)
            committed = position.offset if position.offset >= 0 else 0
            lag[position.partition] = max(0, high - committed)
        self.metrics.lag = lag
        if len(lag) == self.settings.partitions and not any(lag.values()):
            self.metrics.caught_up = True
