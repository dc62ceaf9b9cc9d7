"""The query service's metrics and traces.

The sink reports each written batch (`SinkTelemetry.batch_written`, on its thread): the
batch histograms and counters, and a span for each event whose `traceparent` header is
sampled, so a transfer's trace reaches the view. A middleware times and counts every HTTP
request by route template (never the raw path) and the SQL queries by outcome; what the
service and its sink already keep (lag per partition, positions, rebuild progress, reads
waiting) is read when Prometheus scrapes.

    GET  /metrics           Prometheus text exposition
    GET|POST /admin/log-level
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from foundation.observability import (
    TRACEPARENT_HEADER,
    RequestMetrics,
    add_observability_routes,
    header_value,
    help_of,
    new_registry,
    parse_traceparent,
    remote_parent,
    route_label,
    sampled_flag,
    tracer_provider,
)
from foundation.settings import Settings
from sinks.rebuild import FINISHED_PHASES
from sinks.sql.errors import (
    ACCESS_DENIED,
    AUTHENTICATION_FAILED,
    FUNCTION_NOT_ALLOWED,
    INTO_OUTFILE_NOT_ALLOWED,
    QUERY_IS_TOO_LARGE,
    READONLY,
    TOO_MANY_ROWS_OR_BYTES,
    TOO_MANY_SIMULTANEOUS_QUERIES,
)

if TYPE_CHECKING:
    from sinks.service import QueryService

SERVICE_NAME = "streamwallet-query"
SQL_PATH = "/"
BATCH_BUCKETS_EVENTS = (1, 10, 100, 500, 1000, 2500, 5000, 10_000, 20_000, 50_000)
BATCH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ClickHouse's codes for a query the policy refuses, and for one over a limit (sinks/sql/);
# every other code (bad SQL, an unknown table, the engine failing) is an "error".
REFUSED_CODES = frozenset(
    str(code)
    for code, _ in (READONLY, ACCESS_DENIED, FUNCTION_NOT_ALLOWED, INTO_OUTFILE_NOT_ALLOWED, AUTHENTICATION_FAILED)
)
TIMEOUT_EXCEEDED_CODE, MEMORY_LIMIT_EXCEEDED_CODE = "159", "241"  # raised by the engine itself
LIMIT_CODES = frozenset(
    str(code) for code, _ in (TOO_MANY_SIMULTANEOUS_QUERIES, TOO_MANY_ROWS_OR_BYTES, QUERY_IS_TOO_LARGE)
) | {TIMEOUT_EXCEEDED_CODE, MEMORY_LIMIT_EXCEEDED_CODE}
EXCEPTION_CODE_HEADER = "X-ClickHouse-Exception-Code"


def sql_outcome(status: int, exception_code: str | None) -> str:
    """ok, refused (not allowed), limit (over a limit) or error, from ClickHouse's answer."""
    if exception_code is None and status < 400:
        return "ok"
    if exception_code in REFUSED_CODES:
        return "refused"
    return "limit" if exception_code in LIMIT_CODES else "error"


class SinkTelemetry:
    def __init__(self, settings: Settings) -> None:
        self.registry = new_registry()
        self.tracer_provider = tracer_provider(settings, service=SERVICE_NAME)
        self.tracer = self.tracer_provider.get_tracer(__name__)
        self.service: QueryService | None = None
        self._batch_events = _histogram(self.registry, "streamwallet_sink_batch_events", BATCH_BUCKETS_EVENTS)
        self._batch_seconds = _histogram(self.registry, "streamwallet_sink_batch_seconds", BATCH_BUCKETS_S)
        self._events = _counter(self.registry, "streamwallet_sink_events_written")
        self._batches = _counter(self.registry, "streamwallet_sink_batches")
        self._dead_letters = _counter(self.registry, "streamwallet_sink_dead_letters")
        self._requests = RequestMetrics(self.registry, prefix="streamwallet_query")
        self._sql = _counter(self.registry, "streamwallet_sql_queries", ["outcome"])
        self.registry.register(QueryCollector(self))

    # -- the sink (its thread) --------------------------------------------------------------------

    def batch_written(self, messages: Iterable[Any], *, events: int, dead_letters: int, seconds: float) -> None:
        """A batch is in the views and its offsets stored: count it, and give each event
        whose trace is sampled its span (from the batch's start to now)."""
        self._batch_events.observe(events)
        self._batch_seconds.observe(seconds)
        self._events.inc(events)
        self._batches.inc()
        if dead_letters:
            self._dead_letters.inc(dead_letters)
        started_ns = time.time_ns() - int(seconds * 1e9)
        for message in messages:
            headers = message.headers() if hasattr(message, "headers") else None
            if headers:
                self._event_span(message, headers, started_ns)

    def _event_span(self, message: Any, headers: Any, started_ns: int) -> None:
        value = header_value(headers, TRACEPARENT_HEADER)
        if sampled_flag(value) is False:  # most events: their command was not sampled; not parsed
            return
        parent = parse_traceparent(value)
        if parent is None or not parent.trace_flags.sampled:
            return
        span = self.tracer.start_span(
            "sink write event",
            context=remote_parent(parent),
            kind=SpanKind.CONSUMER,
            start_time=started_ns,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": message.topic() or "",
                "messaging.destination.partition.id": str(message.partition()),
                "messaging.kafka.offset": message.offset() or 0,
                "streamwallet.account_id": (message.key() or b"").decode("utf-8", "replace"),
            },
        )
        span.end()

    # -- HTTP ----------------------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        status = 500
        exception_code = None
        try:
            response = await handler(request)
            status = response.status
            exception_code = response.headers.get(EXCEPTION_CODE_HEADER)
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            self._requests.observe(request, status=status, seconds=time.monotonic() - started)
            if route_label(request) == SQL_PATH and (request.method == "POST" or "query" in request.query):
                self._sql.labels(sql_outcome(status, exception_code)).inc()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        add_observability_routes(router, self.registry)


def _counter(registry: Any, name: str, labels: Iterable[str] = ()) -> Counter:
    return Counter(name, help_of(name), list(labels), registry=registry)


def _histogram(registry: Any, name: str, buckets: Iterable[float]) -> Histogram:
    return Histogram(name, help_of(name), buckets=tuple(buckets), registry=registry)


class QueryCollector(Collector):
    """The service's and its sink's own numbers, read at scrape time."""

    def __init__(self, telemetry: SinkTelemetry) -> None:
        self.telemetry = telemetry

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        service = self.telemetry.service
        if service is None:
            return
        yield CounterMetricFamily(
            "streamwallet_sink_restarts", help_of("streamwallet_sink_restarts"), value=service.sink_restarts
        )
        yield _gauge("streamwallet_query_reads_waiting", service.reads_waiting)
        yield CounterMetricFamily(
            "streamwallet_query_reads_not_yet", help_of("streamwallet_query_reads_not_yet"), value=service.reads_not_yet
        )
        sink = service.sink
        lag = GaugeMetricFamily(
            "streamwallet_sink_lag_events", help_of("streamwallet_sink_lag_events"), labels=["partition"]
        )
        position = GaugeMetricFamily(
            "streamwallet_sink_position", help_of("streamwallet_sink_position"), labels=["partition"]
        )
        if sink is not None:
            metrics = sink.metrics
            for partition, value in sorted(dict(metrics.lag).items()):
                lag.add_metric([str(partition)], value)
            for partition, value in sorted(dict(metrics.positions).items()):
                position.add_metric([str(partition)], value)
            yield _gauge("streamwallet_sink_caught_up", 1 if metrics.caught_up else 0)
            if metrics.newest_event_age_ms is not None:
                yield _gauge("streamwallet_sink_newest_event_age_seconds", metrics.newest_event_age_ms / 1000)
        yield lag
        yield position
        yield from _reconcile_metrics(service)
        progress = service.rebuild_progress
        running = progress is not None and progress.phase not in FINISHED_PHASES
        yield _gauge("streamwallet_rebuild_running", 1 if running else 0)
        if progress is not None:
            yield _gauge("streamwallet_rebuild_offsets", progress.offsets_done)
            yield _gauge("streamwallet_rebuild_offsets_target", progress.events_total)
            yield _gauge("streamwallet_rebuild_events_written", progress.events_written)


def _reconcile_metrics(service: QueryService) -> Iterator[Metric]:
    """The reconciliations this service ran (`GET /reconcile`, `streamwallet reconcile`), by
    outcome, and the differences the last one found (absent until one ran)."""
    runs = CounterMetricFamily(
        "streamwallet_reconcile_runs", help_of("streamwallet_reconcile_runs"), labels=["outcome"]
    )
    for outcome, count in sorted(service.reconcile_runs.items()):
        runs.add_metric([outcome], count)
    yield runs
    if service.reconcile_differences is not None:
        yield _gauge("streamwallet_reconcile_differences", service.reconcile_differences)


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_of(name), value=value)
