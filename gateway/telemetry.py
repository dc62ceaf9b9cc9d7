"""The gateway's metrics and traces, installed by one call (`install`) in gateway/app.py.

The outermost middleware starts a span per request — continuing the caller's trace when
the request carries a W3C `traceparent`, else a new one sampled at `trace_sample_ratio` —
and keeps it current while the handler runs, so the command the request produces carries
the span's `traceparent` in its Kafka headers (foundation/producing.py). It counts and
times every request by route template (never the raw path), method and status; the
pending commands and reads in flight are read when Prometheus scrapes.

    GET  /metrics           Prometheus text exposition
    GET|POST /admin/log-level   (from the gateway's own machine only)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from foundation.observability import (
    TRACEPARENT_HEADER,
    RequestMetrics,
    add_observability_routes,
    help_of,
    method_label,
    new_registry,
    parse_traceparent,
    remote_parent,
    route_label,
    tracer_provider,
)
from foundation.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = "streamwallet-gateway"
RATE_LIMITED_STATUS = 429
TELEMETRY_KEY: web.AppKey[GatewayTelemetry] = web.AppKey("telemetry")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GatewayTelemetry:
    def __init__(self, settings: Settings) -> None:
        self.registry = new_registry()
        self.tracer_provider = tracer_provider(settings, service=SERVICE_NAME)
        self.tracer = self.tracer_provider.get_tracer(__name__)
        self._requests = RequestMetrics(self.registry, prefix="streamwallet_gateway")
        self._rate_limited = Counter(
            "streamwallet_gateway_rate_limited_requests",
            help_of("streamwallet_gateway_rate_limited_requests"),
            ["route"],
            registry=self.registry,
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        route, method = route_label(request), method_label(request)
        parent = parse_traceparent(request.headers.get(TRACEPARENT_HEADER))
        status = 500
        with self.tracer.start_as_current_span(
            f"{method} {route}",
            context=None if parent is None else remote_parent(parent),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as error:
                status = error.status
                raise
            finally:
                seconds = time.monotonic() - started
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                self._requests.observe(request, status=status, seconds=seconds)
                if status == RATE_LIMITED_STATUS:
                    self._rate_limited.labels(route).inc()
                log.debug("%s %s answered %d in %.1f ms", method, route, status, seconds * 1000)


class GatewayCollector(Collector):
    """The pending commands and reads in flight, read at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from gateway.app import CLIENT_KEY, READER_KEY  # the app's keys (it installs this module)

        client = self.app.get(CLIENT_KEY)
        reader = self.app.get(READER_KEY)
        for name, value in (
            ("streamwallet_gateway_pending_commands", 0 if client is None else client.pending()),
            ("streamwallet_gateway_reads_in_flight", 0 if reader is None else reader.reads.count),
        ):
            yield GaugeMetricFamily(name, help_of(name), value=value)


def install(app: web.Application, settings: Settings) -> GatewayTelemetry:
    """Metrics, traces and the log level on the gateway: the outermost middleware (it sees
    every answer, the error bodies included), /metrics and /admin/log-level."""
    telemetry = GatewayTelemetry(settings)
    telemetry.registry.register(GatewayCollector(app))
    app[TELEMETRY_KEY] = telemetry
    app.middlewares.insert(0, telemetry.middleware)
    add_observability_routes(app.router, telemetry.registry)
    return telemetry
