"""The audit sink: AuditEvents from the audit topic into the ClickHouse `audit` table, and
the page of the trail the query service serves (`GET /audit`).

Commit order, as the events sink's (sinks/events.py): consume a bounded batch
(read_committed: a worker's aborted transactions never show), insert its rows, then the
next offset per partition into `audit_progress`. ClickHouse decodes a batch of many records
(sinks/audit_incoming.py); the codec decodes a few, and any batch ClickHouse does not read
exactly as the codec would, and their rows are inserted as they are. A row's identity is its
Kafka position (`audit` is a ReplacingMergeTree ordered by partition and offset, read with
FINAL), so a batch written twice after a crash collapses onto itself; at start the sink
resumes from `audit_progress`. Offsets are never committed to Kafka. A record that cannot be decoded
is skipped with a warning (the trail is not money: nothing is decided from it).

The trail is not rebuilt from the events topic: a rebuild leaves both tables as they are
(sinks/rebuild.py).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from codec import Codec, DecodeError
from foundation.clients import kafka_config
from foundation.schema_registry import codec_for
from foundation.settings import Settings
from ledger.audit import AuditEvent
from sinks.audit_incoming import AUDIT_INCOMING_TABLE, CREATE_AUDIT_INCOMING_SQL, audit_sql, checked_sql, read_back
from sinks.avro_batch import Container, MessageLike, SessionTable, Split, codec_reads, split

log = logging.getLogger(__name__)

AUDIT_POLL_S = 0.2  # how long the sink waits for a first record
AUDIT_PAGE_ROWS_DEFAULT = 100
AUDIT_PAGE_ROWS_MAX = 1000
METADATA_TIMEOUT_S = 10.0
SMALL_BATCH_RECORDS = 64  # below: the codec decodes, rows go straight in (fewer round trips)

# The AuditEvent fields in table order, after the principal's (principal_id, roles).
RECORD_FIELDS = ("action", "account_id", "command_id", "outcome", "code", "message", "source", "occurred_at_ms")
AUDIT_COLUMNS = [
    "principal_id",
    "roles",
    *RECORD_FIELDS[:-1],
    "occurred_at",
    "kafka_partition",
    "kafka_offset",
]
PAGE_COLUMNS = ["principal_id", "roles", *RECORD_FIELDS[:-1]]


class AuditSink:
    def __init__(
        self,
        settings: Settings,
        client: Any,
        *,
        database: str | None = None,
        small_batch_records: int = SMALL_BATCH_RECORDS,
    ) -> None:
        self.settings = settings
        self.client = client  # its session holds the incoming table: a server client needs `session=True`
        self.database = database or settings.clickhouse_database
        self.codec: Codec = codec_for(settings)
        self.topic = settings.topology().audit.name
        self.small_batch_records = small_batch_records  # batches of fewer records skip the incoming table
        self._header = self.codec.header(AuditEvent)
        self._container = Container(self.codec.schema(AuditEvent).expanded)
        self._reads = codec_reads(self.codec, AuditEvent)
        self._incoming = SessionTable(AUDIT_INCOMING_TABLE, CREATE_AUDIT_INCOMING_SQL)
        self.records_written = 0
        self.skipped = 0  # records the codec could not decode
        self.codec_batches = 0  # batches ClickHouse read otherwise than the codec would: decoded by the codec

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(
            {
                **kafka_config(self.settings),
                "group.id": f"{self.settings.topic_prefix}.sink",  # assign() only: never joins, never commits
                "client.id": f"{self.settings.worker_id}-audit-sink",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )
        try:
            stored = self.progress()
            consumer.assign(
                [
                    TopicPartition(self.topic, partition, stored.get(partition, OFFSET_BEGINNING))
                    for partition in self._partitions(consumer)
                ]
            )
            while not stop.is_set():
                first = consumer.poll(AUDIT_POLL_S)
                if first is not None:
                    # As many as the events sink takes at once (`sink_batch_events`): while it
                    # catches up, each batch's two inserts cost ClickHouse more than its rows
                    # (1,000 at a time, the audit trail took the GIL from the events sink).
                    rest = consumer.consume(self.settings.sink_batch_events - 1, timeout=0)
                    self.write([first, *rest])
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer) -> list[int]:
        topic = consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S).topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise RuntimeError(f"the audit topic {self.topic} does not exist (run `streamwallet topics create`)")
        return sorted(topic.partitions)

    def write(self, messages: Sequence[MessageLike]) -> None:
        container = None if len(messages) < self.small_batch_records else self._container
        batch = split(messages, self._header, container, self._reads)
        written = 0
        if batch.in_container:
            if self._decoded_by_clickhouse(batch):
                self.client.command(audit_sql(self.database, AUDIT_COLUMNS))
                written = len(batch.in_container)
            else:
                batch.for_codec.extend(batch.in_container)
        rows = self._decoded_by_codec(batch.for_codec)
        if rows:
            self.client.insert(f"{self.database}.audit", rows, column_names=AUDIT_COLUMNS)
        if batch.next_offsets:
            now_ms = int(time.time() * 1000)
            self.client.insert(
                f"{self.database}.audit_progress",
                [[partition, offset, now_ms] for partition, offset in batch.next_offsets.items()],
                column_names=["partition", "next_offset", "written_at"],
            )
        self.records_written += written + len(rows)

    def _decoded_by_clickhouse(self, batch: Split) -> bool:
        """Whether ClickHouse read the container into the incoming table exactly as the records
        sent, each as the codec would read it (sinks/avro_batch.py). If not, the table is
        emptied again and the codec decodes those messages instead."""
        self._incoming.empty(self.client)
        loaded = self._incoming.load(self.client, batch.container, checked_sql(batch.sent.check))
        wrong = loaded if isinstance(loaded, str) else read_back(batch.sent, loaded)
        if wrong is None:
            return True
        log.warning("a batch of audit records is decoded by the codec instead of ClickHouse: %s", wrong)
        self.codec_batches += 1
        self.client.command(self._incoming.truncate_sql)
        return False

    def _decoded_by_codec(self, messages: Sequence[MessageLike]) -> list[list[Any]]:
        """The audit table's rows of what the codec decodes; what it cannot is skipped."""
        rows: list[list[Any]] = []
        for message in messages:
            partition, offset = message.partition() or 0, message.offset() or 0
            try:
                record = self.codec.decode_record(message.value() or b"", expected=(AuditEvent,))
            except DecodeError as decode_error:
                log.warning("audit record at %s/%d@%d skipped: %s", self.topic, partition, offset, decode_error)
                self.skipped += 1
                continue
            principal = record["principal"]
            fields = [record[name] for name in RECORD_FIELDS]
            rows.append([principal["principal_id"], principal["roles"], *fields, partition, offset])
        return rows

    def progress(self) -> dict[int, int]:
        rows = self.client.query(
            f"SELECT partition, max(next_offset) FROM {self.database}.audit_progress GROUP BY partition"
        ).result_rows
        return {int(partition): int(offset) for partition, offset in rows}


@dataclasses.dataclass(frozen=True, slots=True)
class AuditCursor:
    """Where a page of the trail ended: the order is (occurred_at, partition, offset)."""

    occurred_at_ms: int
    partition: int
    offset: int

    def encode(self) -> str:
        return f"{self.occurred_at_ms}-{self.partition}-{self.offset}"

    @classmethod
    def decode(cls, text: str) -> AuditCursor:
        """ValueError if `text` is not a cursor a page returned."""
        parts = text.split("-")
        if len(parts) != 3 or not all(part.isdigit() and len(part) <= 20 for part in parts):
            raise ValueError(f"{text[:64]!r} is not an audit cursor")
        return cls(*(int(part) for part in parts))


@dataclasses.dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[dict[str, Any]]
    next_cursor: str | None


def audit_page(
    client: Any,
    database: str,
    *,
    limit: int = AUDIT_PAGE_ROWS_DEFAULT,
    after: AuditCursor | None = None,
    account_id: str | None = None,
    principal_id: str | None = None,
) -> AuditPage:
    """The trail oldest first, from `after` (exclusive), optionally for one account or one principal."""
    if not 1 <= limit <= AUDIT_PAGE_ROWS_MAX:
        raise ValueError(f"limit must be within 1..{AUDIT_PAGE_ROWS_MAX}")
    conditions = ["1"]
    parameters: dict[str, Any] = {"rows": limit + 1}
    if after is not None:
        conditions.append(
            "(toUnixTimestamp64Milli(occurred_at), kafka_partition, kafka_offset) > (%(at)s, %(partition)s, %(offset)s)"
        )
        parameters.update(at=after.occurred_at_ms, partition=after.partition, offset=after.offset)
    if account_id is not None:
        conditions.append("account_id = %(account_id)s")
        parameters["account_id"] = account_id
    if principal_id is not None:
        conditions.append("principal_id = %(principal_id)s")
        parameters["principal_id"] = principal_id
    rows = client.query(
        f"""
        SELECT {", ".join(PAGE_COLUMNS)}, toUnixTimestamp64Milli(occurred_at), kafka_partition, kafka_offset
        FROM {database}.audit FINAL
        WHERE {" AND ".join(conditions)}
        ORDER BY occurred_at, kafka_partition, kafka_offset
        LIMIT %(rows)s
        """,
        parameters=parameters,
    ).result_rows
    entries = []
    for row in rows[:limit]:
        entry = dict(zip(PAGE_COLUMNS, row[:-3], strict=True))
        entry["roles"] = list(entry["roles"])
        entry["occurred_at_ms"] = int(row[-3])
        entries.append(entry)
    last = rows[limit - 1] if len(rows) > limit else None
    cursor = None if last is None else AuditCursor(int(last[-3]), int(last[-2]), int(last[-1])).encode()
    return AuditPage(entries=entries, next_cursor=cursor)
