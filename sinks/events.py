"""The events sink: AccountEvents from Kafka into ClickHouse, idempotently.

Commit order, written down once (`EventSink.write`):

    1. consume a bounded batch (read_committed: aborted transactions never show)
    2. hand ClickHouse the batch to decode (account_events_incoming, a temporary table
       emptied first; sinks/incoming.py), then insert from there its events, the newest
       state of each account it touched and the hierarchy edges it revealed (a batch of a
       few events: the codec decodes it, and its rows go straight in)
                                          (tables keyed by what a row describes)
    3. tell the readers waiting for these accounts (read-your-writes): it is visible now
    4. flush the dead letters of events that could not be decoded
    5. at most PROGRESS_STORE_INTERVAL_S later (sooner when idle or stopping), insert the
       next offset per partition into sink_progress (sinks/progress.py)
    6. then commit those offsets to Kafka

The view's position lives in ClickHouse (step 5), next to what it describes: at start the
sink assigns itself every partition at the offsets sink_progress holds, or from the
beginning. So a crash at any step only repeats batches whose rows collapse onto the ones
already written (ReplacingMergeTree, read with FINAL), and a store that was wiped or
rebuilt resumes exactly where its own data ends, whatever Kafka's group offsets say. The
Kafka commit (step 6) is for the operators' tools (consumer-group lag), never read back.

Backpressure: at most `sink_batch_events` events per batch and SINK_PREFETCH_KBYTES of
prefetched messages; one batch is written (on the sink's writer thread) while the next is
consumed and prepared, and no further one, so batches grow with the load (a lone event is
written within SINK_LINGER_MS). Preparing a batch of a few events decodes it and hands its
rows to the readers waiting for them (step 3 for the account's own read: sinks/service.py)
while the batch before it is still being inserted; a batch is inserted, and its position
advanced, only after the one before it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from codec import Codec, DecodeError, DecodeErrorCode
from codec.deadletter import DEAD_LETTER_VALUE_BYTES_MAX, DeadLetter
from foundation.clients import kafka_config
from foundation.offsets import last_stable_offsets
from foundation.producing import flush
from foundation.schema_registry import codec_for
from foundation.settings import Settings
from ledger.events import AccountEvent
from sinks import views
from sinks.avro_batch import (
    POSITION_FIELDS,
    Container,
    MessageLike,
    Sent,
    SessionTable,
    Split,
    codec_reads,
    split,
)
from sinks.incoming import (
    CREATE_INCOMING_SQL,
    INCOMING_TABLE,
    Received,
    events_sql,
    latest_sql,
    read_back,
    received_sql,
    tree_sql,
)
from sinks.progress import StoredProgress
from sinks.schema import column_types

if TYPE_CHECKING:
    from sinks.telemetry import SinkTelemetry

log = logging.getLogger(__name__)

# The AccountEvent fields in table order; the sink adds the Kafka position.
EVENT_FIELDS = [
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
    "occurred_at_ms",
]
# After the Kafka position: columns added by migration 3 (the account's owner, who caused the event).
EVENT_COLUMNS = [*EVENT_FIELDS[:-1], "occurred_at", "kafka_partition", "kafka_offset", "owner", "principal_id"]
LATEST_COLUMNS = [*views.STATE_COLUMNS, "updated_at"]  # account_latest: an account after its newest event
TREE_COLUMNS = ["parent_account_id", "account_id"]
# An EventDecoder row's values, as the incoming table names them.
INCOMING_ROW_COLUMNS = [*EVENT_FIELDS, *POSITION_FIELDS, "owner", "principal.principal_id"]
_METADATA, _SEQUENCE, _PARENT = (EVENT_FIELDS.index(name) for name in ("metadata", "sequence", "parent_account_id"))
_OCCURRED_AT_MS = EVENT_FIELDS.index("occurred_at_ms")
# account_latest's columns in an EventDecoder row (whose occurred_at is in milliseconds).
_LATEST_INDEXES = [EVENT_COLUMNS.index("occurred_at" if name == "updated_at" else name) for name in LATEST_COLUMNS]

LAG_REFRESH_S = 0.5  # how often the lag and the consistent cut are refreshed
SMALL_BATCH_EVENTS = 64  # below: the codec decodes, rows go straight into the views (fewer round trips)
SINK_LINGER_MS = 2  # after a batch's first message, how long more may join it (writing takes longer)
# A batch of a few events takes in what arrives while the batch before it is written, each piece
# decoded by the codec at once, up to this many events: at 1,000 events/s a write of 50-250 ms
# (ClickHouse's merges, the disk) brings that many. What arrives beyond waits, and comes as one
# batch that ClickHouse decodes: the sink's throughput path, with no Python decoding.
JOINED_EVENTS_MAX = 256
SINK_PREFETCH_KBYTES = 32 * 1024  # librdkafka's queue of prefetched messages, at most
# Per partition and fetch request (librdkafka's default, 1 MiB, is ~3,300 of the ledger's events):
# catching up, the sink waited for fetches a third of the time (bench/README.md, stop 31).
SINK_PARTITION_FETCH_BYTES = 8 * 1024 * 1024
CUTS_PENDING_MAX = 16  # last-stable-offset snapshots waiting for the sink to pass them
METADATA_TIMEOUT_S = 10.0
DEAD_LETTER_FLUSH_TIMEOUT_S = 30.0
EDGES_REMEMBERED_MAX = 100_000  # account -> parent edges this sink wrote, not written again


class EventDecoder:
    """AccountEvent bytes -> a table row, from the values of the plain Avro record
    (Codec.decode_values), without a domain object or the record's dict: the sink's rows for
    what ClickHouse does not decode (sinks/incoming.py), and the reconciliation's replay.
    Bad bytes raise DecodeError, as Codec.decode does; so does a negative sequence, which
    the view's UInt64 cannot hold."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        names = [field["name"] for field in codec.schema(AccountEvent).parsed_plain["fields"]]
        if names[: len(EVENT_FIELDS)] != EVENT_FIELDS:  # the row takes the record's leading fields as they are
            raise RuntimeError(f"AccountEvent's fields {names} do not start with the table's {EVENT_FIELDS}")
        self._owner, self._principal = names.index("owner"), names.index("principal")

    def row(self, data: bytes, partition: int, offset: int) -> list[Any]:
        values = self.codec.decode_values(data, expected=(AccountEvent,))
        if values[_SEQUENCE] < 0:  # the view's sequence is a UInt64, and a sequence starts at 1
            raise DecodeError(DecodeErrorCode.UNDECODABLE, f"AccountEvent: a negative sequence, {values[_SEQUENCE]}")
        row = values[: len(EVENT_FIELDS)]
        if row[_METADATA] is None:  # Map columns are not Nullable
            row[_METADATA] = {}
        row.append(partition)
        row.append(offset)
        row.append(values[self._owner])
        row.append(values[self._principal]["principal_id"])
        return row


def passed(positions: Mapping[int, int], cut: Mapping[int, int]) -> bool:
    """Whether every partition's position (the next offset to read) is at or past the cut's."""
    return all(positions.get(partition, 0) >= end for partition, end in cut.items())


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
        event.owner,
        event.principal.principal_id,
    ]


@dataclasses.dataclass(slots=True)
class SinkMetrics:
    events_written: int = 0
    batches: int = 0
    dead_letters: int = 0
    last_batch_events: int = 0
    last_batch_seconds: float = 0.0
    codec_batches: int = 0  # batches ClickHouse read otherwise than the codec would: decoded by the codec
    codec_events: int = 0  # events decoded by the codec: small batches, older schema versions, refused bodies
    events_per_second: float = 0.0  # over the last LAG_REFRESH_S
    positions: dict[int, int] = dataclasses.field(default_factory=dict)  # partition -> next offset to write
    lag: dict[int, int] = dataclasses.field(default_factory=dict)  # partition -> offsets below the stable end
    lag_events: int = 0  # the sum of `lag`: what the view is behind the topic
    newest_event_age_ms: int | None = None  # wall clock minus the newest written event's time
    caught_up: bool = False  # the lag reached zero once since start
    cut: dict[int, int] | None = None  # the newest consistent cut the view has passed (see views)
    cut_taken_at_ms: int | None = None


@dataclasses.dataclass(slots=True)
class Prepared:
    """A consumed batch, ready to be written: a batch of a few events decoded by the codec
    (`rows`), or one ClickHouse will decode (`rows` None)."""

    messages: list[MessageLike]
    batch: Split
    started: float  # time.monotonic() when the batch was consumed
    rows: list[list[Any]] | None = None
    letters: int = 0


@dataclasses.dataclass(slots=True)
class Written:
    """What one batch changed, for read-your-writes: account -> its newest sequence; and,
    for a batch the codec decoded (a few events: `_insert_rows`), account -> the row it
    wrote to account_latest (LATEST_COLUMNS), which a waiting read answers with (the same
    row the view now holds) instead of asking ClickHouse again."""

    newest: dict[str, int]
    events: int
    latest: dict[str, list[Any]] = dataclasses.field(default_factory=dict)


def _received(rows: list[list[Any]]) -> Received:
    """What a batch of rows the codec decoded holds: each account's newest sequence, and the
    row of it that account_latest takes, and the parent that row names."""
    received = Received()
    newest_row: dict[str, list[Any]] = {}
    for row in rows:
        received.add(row[0], row[_SEQUENCE], row[_OCCURRED_AT_MS], row[_PARENT] is not None)
        known = newest_row.get(row[0])
        if known is None or row[_SEQUENCE] > known[_SEQUENCE]:
            newest_row[row[0]] = row
    received.latest = {account: [row[index] for index in _LATEST_INDEXES] for account, row in newest_row.items()}
    received.parents = {account: row[_PARENT] for account, row in newest_row.items() if row[_PARENT] is not None}
    return received


def _written(writing: concurrent.futures.Future[Written] | None) -> None:
    """Wait until the batch being written is written; its error is the sink's."""
    if writing is not None:
        writing.result()


class EventSink:
    def __init__(
        self,
        settings: Settings,
        client: Any,
        *,
        database: str | None = None,
        codec: Codec | None = None,
        on_written: Callable[[Written], None] = lambda written: None,
        on_received: Callable[[Received], None] = lambda received: None,
        commit_offsets: bool = True,
        telemetry: SinkTelemetry | None = None,
        small_batch_events: int = SMALL_BATCH_EVENTS,
    ) -> None:
        self.settings = settings
        self.client = client
        self.database = database or settings.clickhouse_database
        self.codec = codec or codec_for(settings)
        self.decoder = EventDecoder(self.codec)
        self.small_batch_events = small_batch_events  # batches of fewer messages skip the incoming table
        self._header = self.codec.header(AccountEvent)
        self._container = Container(self.codec.schema(AccountEvent).expanded)
        self._reads = codec_reads(self.codec, AccountEvent)
        self.on_written = on_written
        # Called with a small batch's rows before they are inserted: what a balance read with
        # min_seq may answer with at once (each row is of an event the ledger committed, read
        # read_committed; the view holds it after the inserts, or after a restart repeats them).
        self.on_received = on_received
        self.commit_offsets = commit_offsets
        self.telemetry = telemetry  # batch metrics and the events' spans (sinks/telemetry.py)
        self.topology = settings.topology()
        self.topic = self.topology.events.name
        self.metrics = SinkMetrics()
        self._cuts: list[tuple[dict[int, int], int]] = []
        self._column_types: dict[str, list[str]] = {}  # table -> its insert's column types
        self.progress = StoredProgress(self._insert)
        # Offsets stored in sink_progress and not yet committed to Kafka (step 6): committed by
        # the consuming thread only. The writer thread never calls the consumer: a commit from
        # it while the consuming thread was in `consume` hung both (py-spy: the writer in
        # `commit`, the other in `consume`; tests/integration/test_query_worker.py caught it).
        self._uncommitted: dict[int, int] = {}
        # account -> the parent this sink wrote its edge under: a child's every event names
        # its parent, and an edge written again only adds a part to merge away.
        self._edges: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._rate_mark = (time.monotonic(), 0)
        self._incoming = SessionTable(INCOMING_TABLE, CREATE_INCOMING_SQL)  # in this client's session

    # -- the loop ---------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event,
        *,
        until: Mapping[int, int] | None = None,
        report: Callable[[SinkMetrics], None] | None = None,
    ) -> None:
        """Write batches until `stop` is set, or until every partition has reached `until`
        (a rebuild or a catch-up); `report` is called after every lag refresh."""
        consumer = Consumer(
            {
                **kafka_config(self.settings),
                "group.id": f"{self.settings.topic_prefix}.sink",  # assign() only: commits, never joins
                "client.id": f"{self.settings.worker_id}-sink",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 20,
                "max.partition.fetch.bytes": SINK_PARTITION_FETCH_BYTES,
                "check.crcs": True,  # bytes damaged on the wire or disk never reach ClickHouse's reader
                "queued.max.messages.kbytes": SINK_PREFETCH_KBYTES,
            }
        )
        admin = AdminClient({**kafka_config(self.settings)})
        dead_letters = Producer({**kafka_config(self.settings), "acks": "all", "enable.idempotence": True})
        try:
            partitions = self._partitions(consumer)
            stored = views.progress(self.client, self.database)
            self.metrics.positions = {partition: stored.get(partition, 0) for partition in partitions}
            consumer.assign(
                [
                    TopicPartition(self.topic, partition, stored.get(partition, OFFSET_BEGINNING))
                    for partition in partitions
                ]
            )
            log.info("events sink starts at %s", self.metrics.positions)
            with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="events-sink-writer") as writer:
                self._consume(
                    consumer,
                    writer,
                    stop=stop,
                    admin=admin,
                    partitions=partitions,
                    dead_letters=dead_letters,
                    until=until,
                    report=report,
                )
            self.store_progress(consumer)  # stopping: what is written is where the next sink starts
            self._refresh_lag(admin, partitions)
            if report is not None:
                report(self.metrics)
        finally:
            consumer.close()
            flush(dead_letters, DEAD_LETTER_FLUSH_TIMEOUT_S)

    def _consume(
        self,
        consumer: Consumer,
        writer: concurrent.futures.Executor,
        *,
        stop: threading.Event,
        admin: AdminClient,
        partitions: list[int],
        dead_letters: Producer,
        until: Mapping[int, int] | None,
        report: Callable[[SinkMetrics], None] | None,
    ) -> None:
        """The loop of `run`: each batch is consumed and prepared while the one before it is
        written on `writer`; returns with every consumed batch written (or raises the error
        that stopped one)."""
        writing: concurrent.futures.Future[Written] | None = None
        next_refresh = 0.0
        try:
            while not stop.is_set():
                messages = self._next_batch(consumer)
                if messages:
                    prepared = self._prepare(messages, dead_letters)
                    self._join_while_written(consumer, prepared, writing, dead_letters)
                    _written(writing)  # batches are written in the order consumed
                    self._commit(consumer)
                    writing = writer.submit(self._write_prepared, prepared, dead_letters)
                else:
                    # Idle: once the batch in hand is written, every message returned is written.
                    _written(writing)
                    writing = None
                    self._advance_past_markers(consumer)
                # The consumer's position may run one batch ahead of the view: `until` is
                # passed once the batch in hand is written too.
                if until is not None and self._reached(until, consumer):
                    _written(writing)
                    writing = None
                    self._advance_past_markers(consumer)
                    break
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + LAG_REFRESH_S
                    self._refresh_lag(admin, partitions)
                    if report is not None:
                        report(self.metrics)
        finally:
            _written(writing)

    def _next_batch(self, consumer: Consumer) -> list[Any]:
        """Up to sink_batch_events messages: wait (up to sink_flush_interval_ms) for the first
        one, then take what else arrives within SINK_LINGER_MS. A lone write is in the view
        a few milliseconds after it commits; under load the batches fill up at once."""
        first = consumer.poll(self.settings.sink_flush_interval_ms / 1000)
        if first is None:
            return []
        if self.settings.sink_batch_events <= 1:
            return [first]
        return [first, *consumer.consume(self.settings.sink_batch_events - 1, timeout=SINK_LINGER_MS / 1000)]

    def _partitions(self, consumer: Consumer) -> list[int]:
        metadata = consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise RuntimeError(f"the events topic {self.topic} does not exist (run `streamwallet topics create`)")
        return sorted(topic.partitions)

    # -- one batch ----------------------------------------------------------------------------

    def write(
        self,
        messages: Iterable[MessageLike],
        *,
        dead_letters: Producer | None = None,
        consumer: Consumer | None = None,
    ) -> Written:
        """Steps 2-6 of the commit order for one consumed batch."""
        return self._write_prepared(self._prepare(messages, dead_letters), dead_letters, consumer)

    def _prepare(self, messages: Iterable[MessageLike], dead_letters: Producer | None) -> Prepared:
        """What can be done before the batch before this one is written: a batch of a few
        events is decoded by the codec, and its rows are handed to `on_received`."""
        started = time.monotonic()
        messages = list(messages)
        if len(messages) >= self.small_batch_events:  # many events: ClickHouse decodes them (step 2)
            return Prepared(messages, split(messages, self._header, self._container, self._reads), started)
        batch, rows, letters = self._decoded_and_announced(messages, dead_letters)
        return Prepared(messages, batch, started, rows=rows, letters=letters)

    def _decoded_and_announced(
        self, messages: Sequence[MessageLike], dead_letters: Producer | None
    ) -> tuple[Split, list[list[Any]], int]:
        """A few events decoded by the codec (dead letters for the rest), their rows handed to
        `on_received`: (their split, the rows, the dead letters)."""
        batch = split(messages, self._header, None, self._reads)
        rows, letters = self._decoded_by_codec(batch.for_codec, dead_letters)
        if rows:
            self.on_received(_received(rows))
        return batch, rows, letters

    def _join_while_written(
        self,
        consumer: Consumer,
        prepared: Prepared,
        writing: concurrent.futures.Future[Written] | None,
        dead_letters: Producer | None,
    ) -> None:
        """While the batch before it is written, a batch of a few events takes in what else
        arrives, up to JOINED_EVENTS_MAX: each piece is decoded and its rows reach their
        readers at once, not after the inserts it would otherwise wait for."""
        room = min(JOINED_EVENTS_MAX, self.settings.sink_batch_events) - len(prepared.messages)
        while prepared.rows is not None and room > 0 and writing is not None and not writing.done():
            more = consumer.consume(room, timeout=SINK_LINGER_MS / 1000)
            if not more:
                continue
            room -= len(more)
            piece, rows, letters = self._decoded_and_announced(more, dead_letters)
            prepared.messages += more
            prepared.rows += rows
            prepared.letters += letters
            next_offsets = prepared.batch.next_offsets
            for partition, offset in piece.next_offsets.items():
                next_offsets[partition] = max(offset, next_offsets.get(partition, 0))

    def _write_prepared(
        self, prepared: Prepared, dead_letters: Producer | None = None, consumer: Consumer | None = None
    ) -> Written:
        messages, batch, started = prepared.messages, prepared.batch, prepared.started
        if prepared.rows is not None:  # a few events: straight into the views
            received, letters = _received(prepared.rows), prepared.letters
            self._insert_rows(prepared.rows, received)
            events = len(prepared.rows)
        else:
            received, events, letters = self._through_incoming(batch, dead_letters)
        written = Written(newest=received.newest, events=events, latest=received.latest)
        self.on_written(written)
        if letters and dead_letters is not None:
            remaining = flush(dead_letters, DEAD_LETTER_FLUSH_TIMEOUT_S)
            if remaining:
                raise RuntimeError(f"{remaining} dead letters not acknowledged: the batch is not done")
        self._advance(batch.next_offsets)
        if self.progress.due:
            self.store_progress(consumer)
        metrics = self.metrics
        metrics.events_written += events
        metrics.dead_letters += letters
        metrics.batches += 1
        metrics.last_batch_events = events
        metrics.last_batch_seconds = time.monotonic() - started
        if received.newest_ms is not None:
            metrics.newest_event_age_ms = max(0, int(time.time() * 1000) - received.newest_ms)
        if self.telemetry is not None:
            self.telemetry.batch_written(
                messages, events=events, dead_letters=letters, seconds=metrics.last_batch_seconds
            )
        return written

    def _through_incoming(self, batch: Split, dead_letters: Producer | None) -> tuple[Received, int, int]:
        """Step 2 for a batch of many events: ClickHouse decodes what it can into the incoming
        table, the codec the rest, and SQL writes the views from there. (received, events, dead letters)"""
        in_container, for_codec = batch.in_container, batch.for_codec
        self._incoming.empty(self.client)
        received = Received()
        if in_container:
            read = self._decoded_by_clickhouse(batch.container, batch.sent)
            if read is None:
                for_codec.extend(in_container)
                in_container = []
            else:
                received = read
        rows, letters = self._decoded_by_codec(for_codec, dead_letters)
        if rows:
            self.client.insert(INCOMING_TABLE, rows, column_names=INCOMING_ROW_COLUMNS)
            for row in rows:
                received.add(row[0], row[_SEQUENCE], row[_OCCURRED_AT_MS], row[_PARENT] is not None)
        events = len(in_container) + len(rows)
        if events:
            self.client.command(events_sql(self.database, EVENT_COLUMNS))
            self.client.command(latest_sql(self.database, LATEST_COLUMNS))
            if received.parented:
                self.client.command(tree_sql(self.database))
        return received, events, letters

    def _insert_rows(self, rows: list[list[Any]], received: Received) -> None:
        """Step 2 for a batch of a few events (`received`: what `_received` found in them):
        their rows straight into the views, in three inserts, where the incoming table takes
        six statements (a lone event's batch took 28 ms so, 42 ms through the incoming table)."""
        if not rows:
            return
        self._insert("account_events", rows, EVENT_COLUMNS)
        self._insert("account_latest", list(received.latest.values()), LATEST_COLUMNS)
        edges_written = self._edges
        edges = [
            [parent, account] for account, parent in received.parents.items() if edges_written.get(account) != parent
        ]
        if edges:
            self._insert("account_tree", edges, TREE_COLUMNS)
            for parent, account in edges:
                edges_written[account] = parent
                edges_written.move_to_end(account)
            while len(edges_written) > EDGES_REMEMBERED_MAX:
                edges_written.popitem(last=False)

    def _insert(self, table: str, rows: list[list[Any]], columns: list[str]) -> None:
        """Rows into one of the views, with the column types learnt once (an insert without
        them first asks ClickHouse for them: a round trip, ~1 ms, per insert)."""
        types = self._column_types.get(table)
        if types is None:
            known = column_types(self.client, self.database, table)
            types = self._column_types[table] = [known[name] for name in columns]
        self.client.insert(f"{self.database}.{table}", rows, column_names=columns, column_type_names=types)

    def _decoded_by_clickhouse(self, container: bytes, sent: Sent) -> Received | None:
        """What ClickHouse read of the container into the incoming table, if it is exactly
        the records sent, each as the codec would read it (sinks/incoming.py). If not, None:
        the table is emptied again and the codec decodes those messages instead."""
        loaded = self._incoming.load(self.client, container, received_sql(sent.check))
        read = loaded if isinstance(loaded, str) else read_back(sent, loaded)
        if isinstance(read, Received):
            return read
        log.warning("a batch of events is decoded by the codec instead of ClickHouse: %s", read)
        self.metrics.codec_batches += 1
        self.client.command(self._incoming.truncate_sql)
        return None

    def _decoded_by_codec(
        self, messages: list[MessageLike], dead_letters: Producer | None
    ) -> tuple[list[list[Any]], int]:
        """Rows of the incoming table for what the codec decodes; dead letters for the rest."""
        rows: list[list[Any]] = []
        letters = 0
        for message in messages:
            try:
                rows.append(self.decoder.row(message.value() or b"", message.partition() or 0, message.offset() or 0))
            except DecodeError as decode_error:
                self._dead_letter(dead_letters, message, decode_error)
                letters += 1
        self.metrics.codec_events += len(rows)
        return rows, letters

    def _advance(self, next_offsets: Mapping[int, int]) -> None:
        """The view holds everything below `next_offsets`: its position, not stored yet."""
        for partition, offset in next_offsets.items():
            self.metrics.positions[partition] = max(self.metrics.positions.get(partition, 0), offset)
        self.progress.advance(next_offsets)

    def store_progress(self, consumer: Consumer | None = None) -> None:
        """Steps 5 and 6: the positions written since the last store, into sink_progress,
        then (for the operators' tools) to Kafka, at once when given the consumer."""
        stored = self.progress.store()
        if self.commit_offsets:
            self._uncommitted.update(stored)
        if consumer is not None:
            self._commit(consumer)

    def _commit(self, consumer: Consumer) -> None:
        """Step 6 for the offsets stored since the last commit (on the consuming thread)."""
        if self._uncommitted:
            offsets = [TopicPartition(self.topic, partition, offset) for partition, offset in self._uncommitted.items()]
            self._uncommitted = {}
            consumer.commit(offsets=offsets, asynchronous=True)

    def _advance_past_markers(self, consumer: Consumer) -> None:
        """A transaction's commit or abort marker takes an offset but is no message: when
        the consumer has skipped markers (or aborted records) past what was written, the
        view has still read everything below its position. Recorded only while idle, when
        every returned message is written."""
        moved = {}
        for position in consumer.position(consumer.assignment()):
            if position.offset > self.metrics.positions.get(position.partition, 0):
                moved[position.partition] = position.offset
        self._advance(moved)
        self.store_progress(consumer)

    def _reached(self, until: Mapping[int, int], consumer: Consumer) -> bool:
        positions = {
            position.partition: max(position.offset, self.metrics.positions.get(position.partition, 0))
            for position in consumer.position(consumer.assignment())
        }
        return passed(positions, until)

    # -- lag and the consistent cut -------------------------------------------------------------

    def _refresh_lag(self, admin: AdminClient, partitions: list[int]) -> None:
        now = time.monotonic()
        marked_at, marked_events = self._rate_mark
        if now > marked_at:
            self.metrics.events_per_second = (self.metrics.events_written - marked_events) / (now - marked_at)
        self._rate_mark = (now, self.metrics.events_written)
        try:
            ends = last_stable_offsets(admin, self.topic, partitions)
        except KafkaException as error:
            log.warning("could not read the events topic's end offsets: %s", error)
            return
        taken_at_ms = int(time.time() * 1000)
        positions = self.metrics.positions
        self.metrics.lag = {partition: max(0, end - positions.get(partition, 0)) for partition, end in ends.items()}
        self.metrics.lag_events = sum(self.metrics.lag.values())
        if self.metrics.lag_events == 0:
            self.metrics.caught_up = True
        self._cuts.append((ends, taken_at_ms))
        del self._cuts[:-CUTS_PENDING_MAX]
        reached = [(cut, at) for cut, at in self._cuts if passed(positions, cut)]
        if reached:
            self.metrics.cut, self.metrics.cut_taken_at_ms = reached[-1]
            self._cuts = [(cut, at) for cut, at in self._cuts if at > reached[-1][1]]

    # -- dead letters -----------------------------------------------------------------------

    def _dead_letter(self, producer: Producer | None, message: MessageLike, error: DecodeError) -> None:
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
        if producer is not None:
            producer.produce(self.topology.deadletter.name, self.codec.encode(letter), key=message.key())
