"""The query service: owns the ClickHouse store (embedded chDB by default), runs the
events sink on a thread, and serves reads over HTTP.

    GET /health, /ready, /metrics
    GET /accounts/{account_id}[?min_seq=N]   latest balance; with min_seq, waits (bounded)
                                            until the view has reached that sequence
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from typing import Any

from aiohttp import web

from sinks import views
from sinks.clickhouse import connect
from sinks.events import EventSink
from sinks.schema import migrate
from streamwallet.settings import Settings

log = logging.getLogger(__name__)

STATE_KEY: web.AppKey[QueryService] = web.AppKey("query_service")


class QueryService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: Any = None
        self.sink: EventSink | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written: asyncio.Event | None = None
        self.failure: BaseException | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.client = await loop.run_in_executor(None, connect, self.settings.clickhouse_dsn)
        applied = await loop.run_in_executor(None, migrate, self.client, self.settings.clickhouse_database)
        if applied:
            log.info("applied schema migrations %s", applied)
        self._written = asyncio.Event()
        written = self._written

        def notify() -> None:
            loop.call_soon_threadsafe(written.set)

        self.sink = EventSink(self.settings, self.client, on_written=notify)
        sink = self.sink

        def run() -> None:
            try:
                sink.run(self._stop)
            except BaseException as error:
                log.exception("the events sink failed")
                self.failure = error

        self._thread = threading.Thread(target=run, name="events-sink", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 30)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def query(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            None, function, self.client, self.settings.clickhouse_database, *args
        )

    async def wait_written(self, timeout_s: float) -> None:
        assert self._written is not None
        self._written.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._written.wait(), timeout_s)


async def health(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    return web.json_response({"alive": service.alive}, status=200 if service.alive else 503)


async def ready(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    is_ready = service.alive and service.sink is not None
    return web.json_response({"ready": is_ready}, status=200 if is_ready else 503)


async def metrics(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    sink_metrics = dataclasses.asdict(service.sink.metrics) if service.sink else {}
    return web.json_response({"sink": sink_metrics, "failure": repr(service.failure) if service.failure else None})


async def account(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    account_id = request.match_info["account_id"]
    try:
        min_seq = int(request.query.get("min_seq", "0"))
    except ValueError:
        return web.json_response({"error": "min_seq must be an integer"}, status=400)
    deadline = time.monotonic() + service.settings.read_wait_ms_max / 1000
    while True:
        record = await service.query(views.balance, account_id)
        reached = record is not None and record["sequence"] >= min_seq
        if reached or (record is None and min_seq == 0):
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return web.json_response(
                {
                    "status": "not_yet",
                    "message": f"the view has not reached sequence {min_seq} of {account_id} "
                    f"within {service.settings.read_wait_ms_max} ms",
                    "account": record,
                },
                status=409,
            )
        await service.wait_written(min(remaining, 0.05))
    if record is None:
        return web.json_response({"error": f"account {account_id} not found"}, status=404)
    return web.json_response({"status": "ok", "account": record})


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    service = QueryService(settings)
    app[STATE_KEY] = service

    async def lifecycle(app: web.Application) -> Any:
        await service.start()
        yield
        await service.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/accounts/{account_id}", account)
    return app


def run_query_service(settings: Settings) -> None:
    web.run_app(create_app(settings), host=settings.query_host, port=settings.query_port, print=None)
