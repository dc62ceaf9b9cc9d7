"""The worker's metrics and traces, fed by the loop (streams/processor.py) at a few points.

The loop runs on its own thread at thousands of messages a second, so the hot path only
appends to plain lists and dicts of this object (`decided`, once per message); everything
reaches prometheus-client once per committed transaction (`committed`), through labelled
children looked up once. What the loop already counts (ProcessorMetrics), the table sizes
the stores keep (streams/store.py COUNTED_TABLES) and the consumer lag librdkafka reports
in its statistics are read only when Prometheus scrapes (`WorkerCollector`).

Traces: a command or leg whose `traceparent` header is sampled gets a span from its
decision to the commit that carries its outputs; a command without one starts a trace
with probability `trace_sample_ratio`. Either way the trace context (this span's, or the
incoming one untouched when not sampled) goes into the headers of every event, result and
leg the message caused, so the credit on another partition, the settlement and the sink
continue the same trace. Legs also carry the command's append time
(COMMAND_APPENDED_HEADER), so a flow across partitions is timed from its command.

    GET  /metrics           Prometheus text exposition
    GET  /metrics.json      the loop's counters and RocksDB's memory as JSON (benchmarks, tests)
    GET|POST /admin/log-level
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from foundation.observability import (
    COMMAND_APPENDED_HEADER,
    TRACEPARENT_HEADER,
    header_value,
    help_of,
    log_level_answer,
    metrics_payload,
    new_registry,
    parse_traceparent,
    parsed_json,
    remote_parent,
    sampled_flag,
    traceparent,
    tracer_provider,
)
from foundation.settings import Settings
from ledger.commands import COMMAND_TYPES
from ledger.state import Table

if TYPE_CHECKING:
    import faust

    from streams.assignment import OwnedShard
    from streams.processor import LedgerProcessor, ProcessorMetrics

log = logging.getLogger(__name__)

SERVICE_NAME = "streamwallet-worker"
OK_CODE = "OK"  # the code label of an accepted command
# Seconds: a command's way through Kafka and a transaction, from milliseconds to a broker outage.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TURN_PHASES = ("decide", "send", "commit")  # ProcessorMetrics' <phase>_seconds
TURN_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS_MESSAGES = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000)
CONSUMER_STATISTICS_INTERVAL_MS = 5_000  # librdkafka's statistics (the consumer lag), this often
ABORT_REASONS = ("abortable", "state", "retriable")
FLOWS = ("single", "cross_partition")
# Gauges of the tables the stores count (streams/store.py COUNTED_TABLES).
TABLE_GAUGES = {
    Table.OUTGOING: "streamwallet_worker_transfers_in_flight",
    Table.PREPARED: "streamwallet_worker_batch_legs_prepared",
    Table.BATCHES: "streamwallet_worker_batches_open",
    Table.HOLD_EXPIRIES: "streamwallet_worker_holds_open",
}
_COMMAND_CLASSES = frozenset(COMMAND_TYPES)


class LatencyHistogram:
    """Bucket counts kept by one writer thread and read whole by a scrape: observing a
    transaction's latencies takes one lock, not one per message."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: Sequence[float]) -> None:
        bounds, counts = self.bounds, self._counts
        with self._lock:
            for value in values:
                counts[bisect.bisect_left(bounds, value)] += 1
            self._sum += sum(values)

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative buckets as Prometheus names them (le), and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return cumulative, total


def abort_reason(error: Any) -> str:
    """The class of a transaction error the loop aborted on (streams/transactions.py)."""
    if error.txn_requires_abort():
        return "abortable"
    if error.retriable():
        return "retriable"
    return "state"


@dataclasses.dataclass(slots=True)
class Tally:
    """What one batch decided, counted once its transaction commits."""

    results: dict[tuple[str, Any], int] = dataclasses.field(default_factory=dict)  # (command type, code) -> results
    appended: dict[str, list[int]] = dataclasses.field(default_factory=lambda: {flow: [] for flow in FLOWS})
    letters: dict[str, int] = dataclasses.field(default_factory=dict)
    spans: list[Any] = dataclasses.field(default_factory=list)


class WorkerTelemetry:
    """One per LedgerProcessor: its registry, tracer and the per-transaction buffers."""

    def __init__(
        self,
        settings: Settings,
        *,
        commands_topic: str,
        shards: Callable[[], Mapping[int, OwnedShard]],
        metrics: Callable[[], ProcessorMetrics],
        memory: Callable[[], dict[str, int]],
        restored: Callable[[], int] = lambda: 0,
    ) -> None:
        self.settings = settings
        self.registry = new_registry()
        # Roots are decided in `_trace` (before a span is made): the provider samples every root.
        self.tracer_provider = tracer_provider(settings, service=SERVICE_NAME, root_ratio=1.0)
        self.tracer = self.tracer_provider.get_tracer(__name__)
        self._commands_topic = commands_topic
        self._ratio = settings.trace_sample_ratio
        self._commands = Counter(
            "streamwallet_worker_commands",
            help_of("streamwallet_worker_commands"),
            ["type", "code"],
            registry=self.registry,
        )
        self._command_children: dict[tuple[str, Any], Any] = {}
        self._latency = {flow: LatencyHistogram(LATENCY_BUCKETS_S) for flow in FLOWS}
        # Where each committed transaction's turn went (ProcessorMetrics: decide, send, commit).
        self._phase_seconds = {
            phase: Histogram(
                f"streamwallet_worker_transaction_{phase}_seconds",
                help_of(f"streamwallet_worker_transaction_{phase}_seconds"),
                buckets=TURN_BUCKETS_S,
                registry=self.registry,
            )
            for phase in TURN_PHASES
        }
        self._transaction_messages = Histogram(
            "streamwallet_worker_transaction_messages",
            help_of("streamwallet_worker_transaction_messages"),
            buckets=BATCH_BUCKETS_MESSAGES,
            registry=self.registry,
        )
        aborts = Counter(
            "streamwallet_worker_transaction_aborts",
            help_of("streamwallet_worker_transaction_aborts"),
            ["reason"],
            registry=self.registry,
        )
        self._aborts = {reason: aborts.labels(reason) for reason in ABORT_REASONS}
        self._dead_letters = Counter(
            "streamwallet_worker_dead_letters",
            help_of("streamwallet_worker_dead_letters"),
            ["reason"],
            registry=self.registry,
        )
        self._lag: dict[tuple[str, int], int] = {}
        self.registry.register(WorkerCollector(self, shards=shards, metrics=metrics, memory=memory, restored=restored))
        # The batch being decided: what it counts once its transaction commits.
        self._tally = Tally()
        self._counted_messages = 0
        self._counted_phase_s = dict.fromkeys(TURN_PHASES, 0.0)

    # -- the loop's hooks (its thread) ----------------------------------------------------------

    def consumer_options(self) -> dict[str, Any]:
        """Options of the group consumer: librdkafka's statistics, for the lag."""
        return {"statistics.interval.ms": CONSUMER_STATISTICS_INTERVAL_MS, "stats_cb": self.on_statistics}

    def begin(self) -> Tally:
        """A batch begins to be decided: what it decides is tallied apart from the batch
        before it, whose transaction may still be committing. The caller hands the tally to
        `committed`, or to `dropped` if the transaction does not commit."""
        self._tally = Tally()
        return self._tally

    @staticmethod
    def dropped(tally: Tally) -> None:
        """A batch's transaction did not commit (it is decided again): its spans end marked
        aborted, and nothing of it counts."""
        for span in tally.spans:
            span.add_event("transaction aborted; the batch is decided again")
            span.set_status(Status(StatusCode.ERROR, "aborted"))
            span.end()
        tally.spans.clear()

    def decided(self, message: Any, decoded: Any, outcome: Any) -> list[tuple[str, bytes]] | None:
        """A message was decided (not yet committed): its results are counted, its trace
        continued. Returns the headers for what it produces (None: no header). The loop's
        hot path: a message with no header and no sampling costs a few attribute reads."""
        is_command = type(decoded) in _COMMAND_CLASSES
        headers = message.headers()
        results, legs_out = outcome.results, outcome.legs
        appended_ms = 0  # the command's append time, when results or legs need it
        if results or legs_out:
            appended_ms = message.timestamp()[1] if is_command else _appended_ms(headers)
        if results:
            counted = self._tally.results
            for result in results:
                key = (result.command_type, result.code)  # the code's label is made at commit
                counted[key] = counted.get(key, 0) + 1
            if appended_ms > 0:
                self._tally.appended["single" if is_command else "cross_partition"].extend([appended_ms] * len(results))
        context = None
        if headers or (is_command and self._ratio > 0.0 and random.random() < self._ratio):
            context = self._trace(message, decoded, headers, is_command=is_command, results=results)
        if context is None:
            return [(COMMAND_APPENDED_HEADER, b"%d" % appended_ms)] if legs_out and appended_ms > 0 else None
        if not (outcome.events or results or legs_out):
            return None
        if legs_out and appended_ms > 0:
            return [(TRACEPARENT_HEADER, context), (COMMAND_APPENDED_HEADER, b"%d" % appended_ms)]
        return [(TRACEPARENT_HEADER, context)]

    def dead_lettered(self, reason: str) -> None:
        letters = self._tally.letters
        letters[reason] = letters.get(reason, 0) + 1

    def aborted(self, error: Any) -> None:
        self._aborts[abort_reason(error)].inc()

    def committed(self, metrics: ProcessorMetrics, tally: Tally) -> None:
        """The batch's transaction committed: what it decided counts now."""
        now_ms = time.time() * 1000
        for key, count in tally.results.items():
            child = self._command_children.get(key)
            if child is None:
                command_type, code = key
                child = self._commands.labels(command_type, OK_CODE if code is None else code.value)
                self._command_children[key] = child
            child.inc(count)
        for flow, appended in tally.appended.items():
            if appended:
                self._latency[flow].observe_many([max(0.0, now_ms - moment) / 1000 for moment in appended])
        for reason, count in tally.letters.items():
            self._dead_letters.labels(reason).inc(count)
        for phase, histogram in self._phase_seconds.items():
            summed = getattr(metrics, f"{phase}_seconds")
            histogram.observe(summed - self._counted_phase_s[phase])
            self._counted_phase_s[phase] = summed
        self._transaction_messages.observe(metrics.messages - self._counted_messages)
        self._counted_messages = metrics.messages
        for span in tally.spans:
            span.end()
        tally.spans.clear()

    def on_statistics(self, statistics: str) -> None:
        """librdkafka's statistics (served inside the consumer's poll, every
        CONSUMER_STATISTICS_INTERVAL_MS): the lag of each partition this worker consumes."""
        try:
            topics = json.loads(statistics).get("topics", {})
        except ValueError:
            return
        self._lag = dict(partition_lags(topics))

    # -- traces ---------------------------------------------------------------------------------

    def _sampled_root(self) -> bool:
        return self._ratio > 0.0 and random.random() < self._ratio

    def _trace(
        self, message: Any, decoded: Any, headers: Any, *, is_command: bool, results: Sequence[Any]
    ) -> bytes | None:
        """The traceparent for the message's outputs: its own span's if it is traced, the
        incoming one if not sampled, None if it has none and is not sampled here. Called
        for a message with headers, or one the sample ratio picked."""
        incoming = header_value(headers, TRACEPARENT_HEADER)
        flagged = sampled_flag(incoming)
        if flagged is False:  # the common case under a low ratio: carried on untouched
            return bytes(incoming)
        parent = None if incoming is None else parse_traceparent(incoming)
        if parent is not None and not parent.trace_flags.sampled:  # another version's, unsampled
            return bytes(incoming)
        # No (valid) trace context: a command may start a trace; it was already drawn at the
        # ratio if it came without headers.
        if parent is None and not (is_command and (not headers or self._sampled_root())):
            return None
        span = self.tracer.start_span(
            f"decide {type(decoded).__name__}",
            context=None if parent is None else remote_parent(parent),
            kind=SpanKind.CONSUMER,
            attributes=_span_attributes(message, decoded, results),
        )
        self._tally.spans.append(span)
        context = span.get_span_context()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "decided %s on partition %s",
                type(decoded).__name__,
                message.partition(),
                extra={
                    "command_id": getattr(decoded, "command_id", None),
                    "account_id": getattr(decoded, "routing_key", None),
                    "trace_id": format(context.trace_id, "032x"),
                    "span_id": format(context.span_id, "016x"),
                },
            )
        return traceparent(context)

    # -- the web server's routes -------------------------------------------------------------------

    def add_routes(self, app: faust.App, processor: LedgerProcessor) -> None:
        """/metrics, /metrics.json and /admin/log-level on the worker's Faust web server."""
        import faust

        registry = self.registry
        worker_id = self.settings.worker_id

        @app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            body, content_type = metrics_payload(registry)
            return web.bytes(body, headers={"Content-Type": content_type})

        @app.page("/metrics.json")
        async def metrics_json(web: Any, request: Any) -> Any:
            rocksdb = processor.local.memory_bytes() if processor.running else {}
            return web.json({"worker_id": worker_id, **dataclasses.asdict(processor.metrics), "rocksdb": rocksdb})

        @app.page("/admin/log-level")
        class LogLevel(faust.web.View):
            async def get(self, request: Any) -> Any:
                status, body = log_level_answer("GET", None, peer=request.remote)
                return self.json(body, status=status)

            async def post(self, request: Any) -> Any:
                status, body = log_level_answer("POST", parsed_json(await request.read()), peer=request.remote)
                return self.json(body, status=status)


def _appended_ms(headers: Sequence[tuple[str, Any]] | None) -> int:
    """The command's append time a leg carries (0: none, or not a number)."""
    value = header_value(headers, COMMAND_APPENDED_HEADER)
    if value is None:
        return 0
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _span_attributes(message: Any, decoded: Any, results: Sequence[Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.destination.name": message.topic(),
        "messaging.destination.partition.id": str(message.partition()),
        "messaging.kafka.offset": message.offset(),
        "streamwallet.input": type(decoded).__name__,
    }
    for name, attribute in (
        ("command_id", "streamwallet.command_id"),
        ("routing_key", "streamwallet.account_id"),
        ("transfer_id", "streamwallet.transfer_id"),
    ):
        value = getattr(decoded, name, None)
        if isinstance(value, str):
            attributes[attribute] = value
    if results:
        attributes["streamwallet.result_codes"] = [OK_CODE if r.code is None else r.code.value for r in results]
    return attributes


def partition_lags(topics: Mapping[str, Any]) -> Iterator[tuple[tuple[str, int], int]]:
    """((topic, partition), lag) for each partition the consumer was given, from
    librdkafka's statistics: the last stable offset (read_committed) minus the position."""
    for topic, description in topics.items():
        for number, partition in description.get("partitions", {}).items():
            index = int(number)
            if index < 0 or not partition.get("desired", False):
                continue
            end = partition.get("ls_offset", -1)
            if end < 0:
                end = partition.get("hi_offset", -1)
            position = partition.get("app_offset", -1)
            if position < 0:
                position = partition.get("next_offset", -1)
            if end < 0 or position < 0:
                continue
            yield (topic, index), max(0, end - position)


class WorkerCollector(Collector):
    """What the loop already keeps, read at scrape time (not on the loop's thread)."""

    def __init__(
        self,
        telemetry: WorkerTelemetry,
        *,
        shards: Callable[[], Mapping[int, OwnedShard]],
        metrics: Callable[[], ProcessorMetrics],
        memory: Callable[[], dict[str, int]],
        restored: Callable[[], int],
    ) -> None:
        self.telemetry = telemetry
        self.shards = shards
        self.metrics = metrics
        self.memory = memory
        self.restored = restored

    def describe(self) -> list[Metric]:
        return []  # collected only when scraped: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics()
        for name, value in (
            ("streamwallet_worker_messages", metrics.messages),
            ("streamwallet_worker_transactions", metrics.transactions),
            ("streamwallet_worker_producers_replaced", metrics.producers_replaced),
            ("streamwallet_worker_consumers_renewed", metrics.consumers_renewed),
            ("streamwallet_worker_rebalances", metrics.rebalances),
            ("streamwallet_worker_restored_records", max(metrics.restored_records, self.restored())),
        ):
            yield CounterMetricFamily(name, help_of(name), value=value)
        outputs = CounterMetricFamily(
            "streamwallet_worker_outputs", help_of("streamwallet_worker_outputs"), labels=["kind"]
        )
        for kind, value in (("event", metrics.events), ("result", metrics.results), ("leg", metrics.legs)):
            outputs.add_metric([kind], value)
        yield outputs
        yield _gauge("streamwallet_worker_last_restore_seconds", metrics.last_restore_s)
        yield from self._latencies()
        yield from self._partitions()
        memory = GaugeMetricFamily(
            "streamwallet_worker_rocksdb_memory_bytes",
            help_of("streamwallet_worker_rocksdb_memory_bytes"),
            labels=["part"],
        )
        for part, size in self.memory().items():
            memory.add_metric([part], size)
        yield memory

    def _latencies(self) -> Iterator[Metric]:
        name = "streamwallet_worker_command_latency_seconds"
        family = HistogramMetricFamily(name, help_of(name), labels=["flow"])
        for flow, histogram in self.telemetry._latency.items():
            buckets, total = histogram.snapshot()
            family.add_metric([flow], buckets, total)
        yield family

    def _partitions(self) -> Iterator[Metric]:
        shards = sorted(self.shards().items())
        yield _gauge("streamwallet_worker_owned_partitions", len(shards))
        owned = GaugeMetricFamily(
            "streamwallet_worker_partition_owned", help_of("streamwallet_worker_partition_owned"), labels=["partition"]
        )
        tables = {
            table: GaugeMetricFamily(name, help_of(name), labels=["partition"]) for table, name in TABLE_GAUGES.items()
        }
        for partition, shard in shards:
            owned.add_metric([str(partition)], 1)
            counts = dict(shard.store.counts)
            for table, family in tables.items():
                family.add_metric([str(partition)], counts.get(table, 0))
        yield owned
        yield from tables.values()
        lag = GaugeMetricFamily(
            "streamwallet_worker_consumer_lag_messages",
            help_of("streamwallet_worker_consumer_lag_messages"),
            labels=["topic", "partition"],
        )
        owned_numbers = {partition for partition, _ in shards}
        for (topic, partition), value in sorted(self.telemetry._lag.items()):
            if partition in owned_numbers:
                lag.add_metric([topic, str(partition)], value)
        yield lag


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_of(name), value=value)
