"""The worker: a Faust app hosting the ledger's exactly-once loop.

Faust runs the worker's life cycle (start, signals, graceful stop, crash on failure),
its web server (health, readiness, metrics, local reads) and logging. The ledger loop
itself runs as a Faust service on a thread of its own with confluent-kafka
transactions, because Faust's exactly-once cannot carry a ledger (see README, design):
its table writes reach RocksDB before the transaction commits, it has no commit
barrier, and it cannot write to partitions the worker does not consume.

    streamwallet worker
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from typing import Any

import faust
import mode
from faust.app.base import BootStrategy

from foundation import observability
from foundation.settings import Settings
from streams.access import WorkerAccess
from streams.processor import DeciderFactory, LedgerProcessor
from streams.reads import NotOwnedError, committed_account
from streams.telemetry import SERVICE_NAME

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 30.0


class LedgerService(mode.Service):
    """Runs the LedgerProcessor on its own thread; a failure of the loop crashes the worker."""

    def __init__(self, app: faust.App, processor: LedgerProcessor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.processor = processor
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self._crash_task: asyncio.Future[None] | None = None

    async def on_start(self) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                self.processor.run(self._stop)
            except BaseException as error:  # the loop must never die quietly
                log.exception("ledger loop failed; stopping the worker")
                self.failure = error
                loop.call_soon_threadsafe(self._crash, error)

        self._thread = threading.Thread(target=run, name="ledger-loop", daemon=True)
        self._thread.start()

    def _crash(self, error: BaseException) -> None:
        self._crash_task = asyncio.ensure_future(self.app.crash(error))

    async def on_stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, STOP_TIMEOUT_S)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class LedgerBootStrategy(BootStrategy):
    """Faust's own Kafka consumer and producer are for Faust agents and tables, which the
    ledger worker does not run: leaving them out spares every (re)start a consumer-group
    rebalance that would wait out a killed predecessor's session."""

    enable_kafka = False


class WorkerApp(faust.App):
    BootStrategy = LedgerBootStrategy


def create_app(settings: Settings | None = None, *, decider: DeciderFactory | None = None) -> faust.App:
    settings = settings or Settings.from_environment()
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = WorkerApp(
        f"{settings.topic_prefix}-worker",
        broker=f"kafka://{settings.bootstrap_servers.replace(',', ';kafka://')}",
        datadir=str(settings.data_dir / "faust" / settings.worker_id),
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_host,
        # Credentials and roles on every route but health and readiness: streams/access.py.
        web_application_options={"middlewares": [WorkerAccess(settings).middleware]},
        topic_replication_factor=settings.replication_factor,
        topic_partitions=1,
        processing_guarantee="at_least_once",  # Faust commits nothing of the ledger's
        producer_acks=-1,
    )
    processor = LedgerProcessor(settings, decider=decider)
    service = LedgerService(app, processor)
    app.service(service)  # type: ignore[arg-type]  # Faust accepts instances too

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"alive": service.alive}, status=200 if service.alive else 503)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        is_ready = service.alive and processor.ready.is_set()
        return web.json({"ready": is_ready}, status=200 if is_ready else 503)

    processor.telemetry.add_routes(app, processor)  # /metrics, /metrics.json, /admin/log-level

    @app.page("/accounts/{account_id}")
    async def account(web: Any, request: Any, account_id: str) -> Any:
        """An account as this worker's table holds it (committed state), if it owns it."""
        try:
            partition, found = committed_account(processor, account_id)
        except NotOwnedError as error:
            return web.json({"error": str(error), "partition": error.partition}, status=421)
        if found is None:
            return web.json({"error": f"account {account_id} not found", "partition": partition}, status=404)
        record = dataclasses.asdict(found)
        record["status"] = found.status.value
        return web.json({"partition": partition, "account": record})

    return app


def run_worker(
    settings: Settings | None = None, *, loglevel: str = "info", decider: DeciderFactory | None = None
) -> None:
    """Run a worker until it is stopped (SIGTERM/SIGINT) or crashes; exits the process."""
    settings = settings or Settings.from_environment()
    app = create_app(settings, decider=decider)
    logging_config = observability.logging_config(settings.log_format, level=loglevel, service=SERVICE_NAME)
    faust.Worker(app, loglevel=loglevel, logging_config=logging_config).execute_from_commandline()
