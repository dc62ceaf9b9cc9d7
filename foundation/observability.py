"""Logs, traces and the metrics endpoint, set up the same way in every process (the worker,
the query service, the gateway).

Logs: one handler on the root logger, `text` (a line a person reads; the default, so
`./sw up` and the tests stay readable) or `json` (one object per line, for a log
collector: `STREAMWALLET_LOG_FORMAT=json`, which the Helm chart sets). A JSON line carries
the command id, the account and the trace id when the code that logs knows them (passed
as `extra=`, or the current OpenTelemetry span's). The level changes at run time through
`POST /admin/log-level` on each process's web server (`set_log_level`).

Traces: W3C trace context (`traceparent`) in HTTP and Kafka headers, spans recorded with
the OpenTelemetry SDK. Each process has its own TracerProvider (never the global one: a
test may run several processes' parts in one interpreter); spans go to a JSON-lines file
per process when `trace_export_directory` is set, and to an OTLP/HTTP collector when
`otlp_traces_endpoint` is set; with neither, sampled spans are made and dropped (the
trace ids still reach the logs and the Kafka headers).

Metrics: each process serves its own prometheus-client registry at `/metrics`
(`metrics_payload`); the names and their meaning are listed in `METRICS` below (a
dashboard's source) and in the README.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from foundation.settings import Settings

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Record attributes a JSON line carries when the code that logs passes them (extra=...).
CONTEXT_FIELDS = ("command_id", "account_id", "trace_id", "span_id")
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
# The Kafka timestamp (LogAppendTime, ms) of the command a leg, event or result descends
# from: a flow across partitions measures its end-to-end latency from it.
COMMAND_APPENDED_HEADER = "streamwallet-command-appended-ms"
TRACE_SAMPLE_RATIO_MAX = 1.0
SPAN_EXPORT_DELAY_MS = 500  # a sampled span reaches its exporter within about this long
SPAN_QUEUE_SPANS_MAX = 8192  # spans waiting for export at most; more are dropped (and counted by the SDK)
OTLP_EXPORT_TIMEOUT_S = 10.0


# -- logs ----------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, the context fields
    known (command id, account, trace and span ids), any other `extra=` field, the exception."""

    def __init__(self, *, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.service:
            line["service"] = self.service
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and value is not None:
                line[name] = value
        if "trace_id" not in line:
            line.update(_current_trace_fields())
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with the context fields known appended (`[trace_id=… command_id=…]`)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {name: getattr(record, name) for name in CONTEXT_FIELDS if getattr(record, name, None) is not None}
        if "trace_id" not in fields:
            fields.update(_current_trace_fields())
        if not fields:
            return text
        context = " ".join(f"{name}={value}" for name, value in fields.items())
        first, newline, rest = text.partition("\n")
        return f"{first} [{context}]{newline}{rest}"


def _current_trace_fields() -> dict[str, str]:
    """The trace and span ids of the span current in this context (a request's), if any."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


def log_formatter(log_format: str, *, service: str = "") -> logging.Formatter:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"STREAMWALLET_LOG_FORMAT={log_format!r}: choose one of {', '.join(LOG_FORMATS)}")
    return JsonFormatter(service=service) if log_format == "json" else TextFormatter()


def logging_config(log_format: str, *, level: str, service: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary: the root logger at `level`, one stream
    handler on stderr with our formatter (Faust's worker takes it as `logging_config`)."""
    log_formatter(log_format)  # refuses an unknown format before anything is configured
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "streamwallet": {"()": log_formatter, "log_format": log_format, "service": service},
        },
        "handlers": {
            "streamwallet": {
                "class": "logging.StreamHandler",
                "formatter": "streamwallet",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": checked_level(level), "handlers": ["streamwallet"]},
    }


def configure_logging(*, log_format: str, level: str, service: str) -> None:
    """Replace the root logger's handlers with ours (the query service and the gateway;
    the worker hands `logging_config` to Faust, which applies it the same way)."""
    import logging.config

    logging.config.dictConfig(logging_config(log_format, level=level, service=service))


def checked_level(level: str) -> str:
    """A level name in upper case, or ValueError naming the ones there are."""
    name = level.strip().upper() if isinstance(level, str) else ""
    if name == "WARN":
        name = "WARNING"
    if name not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}: choose one of {', '.join(LOG_LEVELS)}")
    return name


def log_level() -> str:
    return logging.getLevelName(logging.getLogger().getEffectiveLevel())


def set_log_level(level: str) -> tuple[str, str]:
    """Set the root logger's level, and its handlers' (Faust sets a level on its handler
    too); returns (previous, now). Loggers with a level of their own keep it."""
    name = checked_level(level)
    root = logging.getLogger()
    previous = log_level()
    root.setLevel(name)
    for handler in root.handlers:
        if handler.level != logging.NOTSET:
            handler.setLevel(name)
    return previous, name


def log_level_answer(method: str, body: Any, *, peer: str | None) -> tuple[int, dict[str, Any]]:
    """`GET /admin/log-level` (the level) and `POST /admin/log-level` with `{"level": "debug"}`
    (change it), the same on every process: (HTTP status, JSON body). Only from the
    process's own machine until authentication lands (use `kubectl port-forward`)."""
    if not is_loopback(peer):
        return 403, {"code": "FORBIDDEN", "message": "the log level can be changed only from this machine (loopback)"}
    if method == "GET":
        return 200, {"level": log_level()}
    level = body.get("level") if isinstance(body, dict) else None
    if not isinstance(level, str):
        return 400, {
            "code": "BAD_LOG_LEVEL",
            "message": f'send {{"level": "<one of {", ".join(LOG_LEVELS)}>"}} as JSON',
        }
    try:
        previous, now = set_log_level(level)
    except ValueError as error:
        return 400, {"code": "BAD_LOG_LEVEL", "message": str(error)}
    logging.getLogger(__name__).warning("log level changed from %s to %s", previous, now)
    return 200, {"level": now, "previous": previous}


def parsed_json(raw: bytes) -> Any:
    """A request body as JSON, or None if it is not (the answer then says what to send)."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def is_loopback(peer: str | None) -> bool:
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


# -- traces --------------------------------------------------------------------------------------


class FileSpanExporter(SpanExporter):
    """Finished spans as JSON lines appended to one file per process (tests, and a look
    without a collector). Thread-safe; each span is one write."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span), default=str) + "\n" for span in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as file:
            file.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def span_record(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    parent = span.parent
    if context is None:
        raise ValueError("a finished span without a context")
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_span_id": None if parent is None else format(parent.span_id, "016x"),
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "events": [event.name for event in span.events],
    }


def tracer_provider(
    settings: Settings, *, service: str, root_ratio: float | None = None, exporters: Sequence[SpanExporter] = ()
) -> TracerProvider:
    """This process's tracer provider: a span with a parent is sampled as its parent is;
    one without, with probability `root_ratio` (default `trace_sample_ratio`; the worker
    decides before it starts a span and passes 1). Spans go to the configured file and
    collector, and to `exporters` (the tests' in-memory one)."""
    ratio = settings.trace_sample_ratio
    if not 0.0 <= ratio <= TRACE_SAMPLE_RATIO_MAX:
        raise ValueError(f"STREAMWALLET_TRACE_SAMPLE_RATIO={ratio}: a ratio within 0..1")
    resource = Resource.create({"service.name": service, "service.instance.id": settings.worker_id})
    sampler = ParentBased(TraceIdRatioBased(ratio if root_ratio is None else root_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler)
    chosen = list(exporters)
    if settings.trace_export_directory:
        name = f"{service}-{settings.worker_id}-{os.getpid()}.jsonl"
        chosen.append(FileSpanExporter(Path(settings.trace_export_directory) / name))
    if settings.otlp_traces_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        chosen.append(OTLPSpanExporter(endpoint=settings.otlp_traces_endpoint, timeout=OTLP_EXPORT_TIMEOUT_S))
    for exporter in chosen:
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter, schedule_delay_millis=SPAN_EXPORT_DELAY_MS, max_queue_size=SPAN_QUEUE_SPANS_MAX
            )
        )
    return provider


def traceparent(context: SpanContext) -> bytes:
    """The W3C `traceparent` of a span context (version 00)."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}".encode()


def parse_traceparent(value: bytes | str | None) -> SpanContext | None:
    """A remote span context from a `traceparent` value, or None if it is absent or not
    one (an invalid header starts a new trace, as the W3C recommendation says)."""
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    parts = text.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or (parts[0] == "00" and len(parts) != 4):
        return None
    version, trace_id, span_id, flags = parts[:4]
    if len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        return None
    try:
        int(version, 16)
        context = SpanContext(
            trace_id=int(trace_id, 16),
            span_id=int(span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(int(flags, 16) & TraceFlags.SAMPLED),
        )
    except ValueError:
        return None
    return context if context.is_valid else None


TRACEPARENT_LENGTH = 55  # version 00: 2 + 1 + 32 + 1 + 16 + 1 + 2 characters


def sampled_flag(value: bytes | None) -> bool | None:
    """The sampled flag of a version-00 `traceparent` without parsing the ids (the worker
    reads it for every message that has one); None for anything else (absent, another
    version or malformed: `parse_traceparent` then decides)."""
    if value is None or len(value) != TRACEPARENT_LENGTH or value[:3] != b"00-" or value[35:36] != b"-":
        return None
    try:
        return bool(int(value[53:55], 16) & TraceFlags.SAMPLED)
    except ValueError:
        return None


def header_value(headers: Sequence[tuple[str, Any]] | None, name: str) -> Any:
    """The first value of a Kafka header (headers are a list of (name, bytes))."""
    if headers:
        for key, value in headers:
            if key == name:
                return value
    return None


def current_trace_headers() -> list[tuple[str, bytes]] | None:
    """Kafka headers carrying the current span's context (a gateway request's), or None
    outside any span: what `foundation.producing` adds to what it produces."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return [(TRACEPARENT_HEADER, traceparent(context))]


def remote_parent(context: SpanContext) -> Any:
    """An OpenTelemetry context whose current span is `context`, to start a child of it."""
    return trace.set_span_in_context(NonRecordingSpan(context))


# -- HTTP (the aiohttp servers of the query service and the gateway) -------------------------------

UNMATCHED_ROUTE = "unmatched"  # the route label of a request no route took (404, 405)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: a read waits for min_seq up to read_wait_ms_max, a submit for its result up to
# gateway_result_timeout_ms (5 and 10 s by default).
REQUEST_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def route_label(request: web.Request) -> str:
    """The route's template (`/v1/accounts/{account_id}`), never the raw path: bounded by
    the routes there are."""
    resource = request.match_info.route.resource
    return UNMATCHED_ROUTE if resource is None else resource.canonical


def method_label(request: web.Request) -> str:
    return request.method if request.method in HTTP_METHODS else "OTHER"


class RequestMetrics:
    """`<prefix>_requests_total` by route, method and status, and
    `<prefix>_request_duration_seconds` by route, in `registry`."""

    def __init__(self, registry: CollectorRegistry, *, prefix: str) -> None:
        self._requests = Counter(
            f"{prefix}_requests",
            help_of(f"{prefix}_requests"),
            ["route", "method", "status"],
            registry=registry,
        )
        self._durations = Histogram(
            f"{prefix}_request_duration_seconds",
            help_of(f"{prefix}_request_duration_seconds"),
            ["route"],
            buckets=REQUEST_BUCKETS_S,
            registry=registry,
        )

    def observe(self, request: web.Request, *, status: int, seconds: float) -> None:
        route = route_label(request)
        self._requests.labels(route, method_label(request), str(status)).inc()
        self._durations.labels(route).observe(seconds)


def add_observability_routes(router: web.UrlDispatcher, registry: CollectorRegistry) -> None:
    """GET /metrics (`registry`) and GET|POST /admin/log-level."""

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = metrics_payload(registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    router.add_get("/metrics", metrics, allow_head=False)
    router.add_get("/admin/log-level", log_level_route, allow_head=False)
    router.add_post("/admin/log-level", log_level_route)


async def log_level_route(request: web.Request) -> web.Response:
    """GET or POST /admin/log-level (`log_level_answer`)."""
    body = parsed_json(await request.read()) if request.method == "POST" else None
    status, answer = log_level_answer(request.method, body, peer=request.remote)
    return web.json_response(answer, status=status)


# -- metrics -------------------------------------------------------------------------------------


def new_registry() -> CollectorRegistry:
    """A registry for one process's metrics, with the process's own CPU, memory, file
    descriptors, Python version and garbage collection."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series beside each counter
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def metrics_payload(registry: CollectorRegistry) -> tuple[bytes, str]:
    """(body, Content-Type) of the Prometheus text exposition of `registry`."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def help_of(name: str) -> str:
    """The documented meaning of a metric (METRICS), for its HELP line."""
    return METRICS[name][1]


# Every metric streamwallet exposes, with its type and meaning: the one list a dashboard is
# built from (the README's table says the same). Counters are named without `_total` here,
# as prometheus-client takes them; the exposition adds `_total`.
METRICS: Mapping[str, tuple[str, str]] = {
    # the worker (streams/telemetry.py)
    "streamwallet_worker_commands": (
        "counter",
        "Commands given their final result, by command type and result code (OK when accepted).",
    ),
    "streamwallet_worker_command_latency_seconds": (
        "histogram",
        "From a command's append to the commands topic (LogAppendTime) to the commit of the transaction "
        "carrying its final result; flow=single for one-step commands, cross_partition for flows across partitions.",
    ),
    "streamwallet_worker_messages": ("counter", "Commands and legs decided in committed transactions."),
    "streamwallet_worker_transactions": ("counter", "Kafka transactions committed."),
    "streamwallet_worker_transaction_decide_seconds": (
        "histogram",
        "Time a committed transaction's batch spent deciding and producing its records, "
        "less the wait for the transaction before it.",
    ),
    "streamwallet_worker_transaction_send_seconds": (
        "histogram",
        "Time a committed transaction spent sending: its records flushed, the offsets' call waited for "
        "(while the next batch is decided).",
    ),
    "streamwallet_worker_transaction_commit_seconds": ("histogram", "Time spent in commit_transaction."),
    "streamwallet_worker_transaction_messages": ("histogram", "Input messages decided in one committed transaction."),
    "streamwallet_worker_transaction_aborts": (
        "counter",
        "Transactions aborted and their batch decided again, by reason class (abortable, state, retriable).",
    ),
    "streamwallet_worker_producers_replaced": (
        "counter",
        "Transactional producers replaced after a fatal error or fencing.",
    ),
    "streamwallet_worker_consumers_renewed": ("counter", "Group consumers replaced after the group fenced them."),
    "streamwallet_worker_rebalances": ("counter", "Partition assignments taken (each one restored first)."),
    "streamwallet_worker_dead_letters": (
        "counter",
        "Inputs sent to the dead-letter topic in committed transactions, by reason code.",
    ),
    "streamwallet_worker_outputs": (
        "counter",
        "Records produced in committed transactions, by kind (event, result, leg).",
    ),
    "streamwallet_worker_consumer_lag_messages": (
        "gauge",
        "Per owned input partition: last stable offset minus the consumer's position (librdkafka statistics).",
    ),
    "streamwallet_worker_transfers_in_flight": (
        "gauge",
        "Per partition: transfers debited here whose credit has not settled yet.",
    ),
    "streamwallet_worker_batch_legs_prepared": (
        "gauge",
        "Per partition: atomic batch legs prepared here and not yet decided.",
    ),
    "streamwallet_worker_batches_open": ("gauge", "Per partition: atomic batches coordinated here and not finished."),
    "streamwallet_worker_holds_open": (
        "gauge",
        "Per partition: holds placed and neither captured, voided nor expired.",
    ),
    "streamwallet_worker_restored_records": (
        "counter",
        "Changelog records restored into RocksDB (grows while a restore runs: its progress).",
    ),
    "streamwallet_worker_last_restore_seconds": ("gauge", "How long the last assignment took to restore."),
    "streamwallet_worker_owned_partitions": ("gauge", "Partitions this worker owns now."),
    "streamwallet_worker_partition_owned": ("gauge", "1 for each partition this worker owns now."),
    "streamwallet_worker_rocksdb_memory_bytes": ("gauge", "RocksDB's memory, by part (memtables, block cache, ...)."),
    # the query service (sinks/telemetry.py)
    "streamwallet_sink_lag_events": (
        "gauge",
        "Per events partition: offsets between the view's position and the topic's last stable offset.",
    ),
    "streamwallet_sink_position": ("gauge", "Per events partition: the next offset the view will write."),
    "streamwallet_sink_events_written": ("counter", "Events written into the views."),
    "streamwallet_sink_batches": ("counter", "Batches written into the views."),
    "streamwallet_sink_batch_events": ("histogram", "Events in one batch written into the views."),
    "streamwallet_sink_batch_seconds": ("histogram", "Time to write one batch, its offsets included."),
    "streamwallet_sink_dead_letters": ("counter", "Events the sink could not decode (sent to the dead-letter topic)."),
    "streamwallet_sink_restarts": ("counter", "Times the sink failed and was started again."),
    "streamwallet_sink_caught_up": ("gauge", "1 once the view reached the topic's end since start."),
    "streamwallet_sink_newest_event_age_seconds": ("gauge", "Wall clock minus the time of the newest event written."),
    "streamwallet_rebuild_offsets": (
        "gauge",
        "Offsets of the events topic the running (or last) rebuild of the views has replayed.",
    ),
    "streamwallet_rebuild_offsets_target": (
        "gauge",
        "Offsets the running (or last) rebuild replays in all (transaction markers included).",
    ),
    "streamwallet_rebuild_events_written": ("gauge", "Events the running (or last) rebuild has written."),
    "streamwallet_rebuild_running": ("gauge", "1 while a rebuild of the views runs."),
    "streamwallet_reconcile_runs": (
        "counter",
        "Reconciliations this query service ran (GET /reconcile), by outcome: ok, or mismatch (differences found).",
    ),
    "streamwallet_reconcile_differences": (
        "gauge",
        "Differences the last reconciliation this query service ran found (0: the views agree).",
    ),
    "streamwallet_query_requests": (
        "counter",
        "Requests to the query service, by route template, method and status.",
    ),
    "streamwallet_query_request_duration_seconds": (
        "histogram",
        "Time to answer a request of the query service, by route template (reads wait for min_seq within it).",
    ),
    "streamwallet_query_reads_waiting": ("gauge", "Reads waiting for the view to reach their min_seq."),
    "streamwallet_query_reads_not_yet": ("counter", "Reads answered not_yet: the view did not reach min_seq in time."),
    "streamwallet_sql_queries": (
        "counter",
        "SQL queries by outcome: ok, refused (not allowed: a write, a table function, ...), limit (over a "
        "time, memory, size or concurrency limit) or error (bad SQL, an unknown table, the engine failing).",
    ),
    # the gateway (gateway/telemetry.py)
    "streamwallet_gateway_requests": ("counter", "Requests by route template, method and status."),
    "streamwallet_gateway_request_duration_seconds": ("histogram", "Time to answer a request, by route template."),
    "streamwallet_gateway_pending_commands": ("gauge", "Submitted commands waiting for their result."),
    "streamwallet_gateway_rate_limited_requests": (
        "counter",
        "Requests answered 429 (rate limits, PENDING_LIMIT, DUPLICATE_BACKLOG), by route template.",
    ),
    "streamwallet_gateway_reads_in_flight": ("gauge", "Reads forwarded to the query service and not answered yet."),
}
