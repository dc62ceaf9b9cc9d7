"""The query service: owns the ClickHouse store (embedded chDB by default), runs the
events sink on a thread, and serves the views over HTTP.

    GET  /health, /ready, /metrics                   (metrics: the sink's lag, rate, positions, cut)
    GET  /accounts/{id}                              balance and available balance
    GET  /accounts/{id}/history?limit=&before=|after=   events with the running balance, by cursor
    GET  /accounts/{id}/as-of?sequence=N | ?at=<ms or ISO 8601>   the account as of then
    GET  /accounts/{id}/turnover?from=&to=           daily turnover (UTC days, YYYY-MM-DD)
    GET  /accounts/{id}/rollup                       the account with its descendants summed in
    GET  /totals                                     per-currency totals and conservation, at a consistent cut
    GET  /reconcile                                  the reconciliation report (sinks/reconcile.py)
    POST /admin/rebuild, GET /admin/rebuild          rebuild every view from offset zero; its progress

Read-your-writes: every /accounts/{id}... read takes `min_seq`, the sequence a command's
result returned for that account. The read waits until the view holds that event of the
account, at most `read_wait_ms_max`, then answers; after the bound it answers 409 with
status "not_yet" (and Retry-After). We wait on the view rather than read the owning
worker's table (Faust's table routing): the view is what history, as-of, turnover and
roll-ups read too, so one rule makes every answer consistent with the write, and the
command side serves no reads. The wait costs no polling and cannot miss a wake-up: the
reader registers before it looks, and the sink wakes the readers of exactly the accounts
each written batch touched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from foundation.settings import Settings
from sinks import views
from sinks.clickhouse import ClientPool, StoreInUseError, StoreLockedError, connect
from sinks.events import EventSink, Written, passed
from sinks.rebuild import FINISHED_PHASES, RebuildProgress, rebuild
from sinks.reconcile import reconcile
from sinks.schema import migrate

log = logging.getLogger(__name__)

STATE_KEY: web.AppKey[QueryService] = web.AppKey("query_service")
QUERY_THREADS = 8  # readers running at once, each with its own client
READ_WAITERS_MAX = 10_000  # reads waiting for min_seq at once; more get 503
SINK_RESTART_DELAY_S_MIN = 0.5
SINK_RESTART_DELAY_S_MAX = 30.0
SINK_STOP_TIMEOUT_S = 30.0
REACH_TIMEOUT_S = 120.0  # reconciliation waits this long at most for the sink to pass its cut
REACH_POLL_S = 0.05
NOT_YET_RETRY_AFTER_S = 1


class TooManyWaitersError(RuntimeError):
    pass


class QueryService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = settings.clickhouse_database
        self.pool = ClientPool(settings.clickhouse_dsn)
        self.executor = concurrent.futures.ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="query")
        self.sink: EventSink | None = None
        self.failure: str | None = None
        self.sink_failing = False  # between a failure and the next start
        self.sink_restarts = 0
        self.rebuild_progress: RebuildProgress | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = threading.Event()
        self._sink_stop = threading.Event()
        self._resumed = threading.Event()
        self._sink_idle = threading.Event()
        self._sink_idle.set()  # no sink runs yet
        self._supervisor: threading.Thread | None = None
        self._sink_control = threading.Lock()  # pausing and (re)starting the sink exclude each other
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self.reads_waiting = 0
        self.reads_waited = 0  # reads with min_seq that found the view behind and waited
        self.reads_not_yet = 0  # ... and were answered "not yet"
        self.reconciling = asyncio.Lock()

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        sink_client = await self._loop.run_in_executor(None, connect, self.settings.clickhouse_dsn)
        applied = await self._loop.run_in_executor(None, migrate, sink_client, self.database)
        if applied:
            log.info("applied schema migrations %s", applied)
        self._resumed.set()
        self._supervisor = threading.Thread(
            target=self._supervise, args=(sink_client,), name="events-sink", daemon=True
        )
        self._supervisor.start()

    async def stop(self) -> None:
        self._closing.set()
        self._sink_stop.set()
        self._resumed.set()
        if self._supervisor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._supervisor.join, SINK_STOP_TIMEOUT_S)
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _supervise(self, client: Any) -> None:
        """Run the sink; after a failure start it again (it resumes from the offsets stored
        with the data, so nothing is lost or doubled), backing off up to a bound."""
        delay = SINK_RESTART_DELAY_S_MIN
        while not self._closing.is_set():
            self._resumed.wait()
            with self._sink_control:
                if self._closing.is_set():
                    break
                if not self._resumed.is_set():
                    continue  # paused meanwhile
                self._sink_stop = threading.Event()
                self._sink_idle.clear()
            sink = EventSink(self.settings, client, on_written=self._notify)
            self.sink = sink
            self.sink_failing = False
            try:
                sink.run(self._sink_stop)
                delay = SINK_RESTART_DELAY_S_MIN
            except Exception as error:  # logged, shown in /metrics, and the sink restarts
                log.exception("the events sink failed; restarting in %.1fs", delay)
                self.failure = f"{type(error).__name__}: {error}"
                self.sink_failing = True
                self.sink_restarts += 1
                self._closing.wait(delay)
                delay = min(2 * delay, SINK_RESTART_DELAY_S_MAX)
            finally:
                self._sink_idle.set()

    def pause_sink(self) -> None:
        """Stop the sink between two batches and keep it stopped until resume_sink()."""
        with self._sink_control:
            self._resumed.clear()
            self._sink_stop.set()
        if not self._sink_idle.wait(SINK_STOP_TIMEOUT_S):
            raise TimeoutError(f"the sink did not stop within {SINK_STOP_TIMEOUT_S}s")

    def resume_sink(self) -> None:
        self._resumed.set()

    @property
    def alive(self) -> bool:
        return self._supervisor is not None and self._supervisor.is_alive()

    # -- reads ---------------------------------------------------------------------------------

    async def query(self, function: Callable[..., Any], *args: Any, **keywords: Any) -> Any:
        def run() -> Any:
            return function(self.pool.client(), self.database, *args, **keywords)

        return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    def _notify(self, written: Written) -> None:
        """Called on the sink's thread once a batch is written (visible to queries)."""
        if self._loop is not None and written.newest:
            self._loop.call_soon_threadsafe(self._wake, written.newest)

    def _wake(self, newest: Mapping[str, int]) -> None:
        if not self._waiters:
            return
        for account_id, sequence in newest.items():
            for min_seq, future in self._waiters.get(account_id, ()):
                if min_seq <= sequence and not future.done():
                    future.set_result(None)

    async def reached(self, account_id: str, min_seq: int) -> tuple[bool, dict[str, Any] | None]:
        """Wait, at most read_wait_ms_max, until the view holds event `min_seq` of the
        account. Returns (reached, the account as the view has it)."""
        if min_seq <= 0:
            return True, await self.query(views.balance, account_id)
        if self.reads_waiting >= READ_WAITERS_MAX:
            raise TooManyWaitersError(f"{READ_WAITERS_MAX} reads already wait for the view")
        deadline = time.monotonic() + self.settings.read_wait_ms_max / 1000
        loop = asyncio.get_running_loop()
        waited = False
        while True:
            # Registered before looking: a batch written after the look wakes this reader.
            future: asyncio.Future[None] = loop.create_future()
            entry = (min_seq, future)
            self._waiters.setdefault(account_id, []).append(entry)
            self.reads_waiting += 1
            try:
                record = await self.query(views.balance, account_id)
                if record is not None and record["sequence"] >= min_seq:
                    return True, record
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.reads_not_yet += 1
                    return False, record
                if not waited:
                    waited = True
                    self.reads_waited += 1
                try:
                    await asyncio.wait_for(future, remaining)
                except TimeoutError:
                    self.reads_not_yet += 1
                    return False, record
            finally:
                self.reads_waiting -= 1
                entries = self._waiters[account_id]
                entries.remove(entry)
                if not entries:
                    del self._waiters[account_id]

    # -- reconciliation and rebuild --------------------------------------------------------------

    def reach(self, cut: Mapping[int, int]) -> None:
        deadline = time.monotonic() + REACH_TIMEOUT_S
        while True:
            sink = self.sink
            positions = {} if sink is None else sink.metrics.positions
            if passed(positions, cut):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sink did not reach {dict(cut)} within {REACH_TIMEOUT_S}s (at {positions})")
            time.sleep(REACH_POLL_S)

    def run_reconcile(self) -> dict[str, Any]:
        client = connect(self.settings.clickhouse_dsn)
        return reconcile(self.settings, client, database=self.database, reach=self.reach).to_json()

    def run_rebuild(self) -> None:
        client = connect(self.settings.clickhouse_dsn)

        def exchange(swap: Callable[[], None]) -> None:
            self.pause_sink()
            try:
                swap()
            finally:
                self.resume_sink()

        def report(progress: RebuildProgress) -> None:
            self.rebuild_progress = dataclasses.replace(progress)

        rebuild(self.settings, client, database=self.database, report=report, exchange=exchange, stop=self._closing)


# -- handlers ------------------------------------------------------------------------------------


def _integer(request: web.Request, name: str, default: int | None = None) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error": "{name} must be an integer"}}', content_type="application/json"
        ) from None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


Answer = Callable[[QueryService, str, dict[str, Any] | None], Awaitable[web.Response]]


async def _account_read(request: web.Request, answer: Answer, *, needs_account: bool = True) -> web.Response:
    """The read-your-writes frame of every per-account endpoint. Without min_seq, an
    endpoint that does not need the account's current state reads nothing extra."""
    service = request.app[STATE_KEY]
    account_id = request.match_info["account_id"]
    min_seq = _integer(request, "min_seq", 0) or 0
    if min_seq <= 0 and not needs_account:
        return await answer(service, account_id, None)
    try:
        reached, record = await service.reached(account_id, min_seq)
    except TooManyWaitersError as error:
        return web.json_response({"error": str(error)}, status=503, headers={"Retry-After": "1"})
    if not reached:
        return web.json_response(
            {
                "status": "not_yet",
                "message": f"the view has not reached sequence {min_seq} of {account_id} within "
                f"{service.settings.read_wait_ms_max} ms (it holds {record['sequence'] if record else 'nothing'}); "
                "ask again",
                "min_seq": min_seq,
                "view_sequence": record["sequence"] if record else 0,
                "account": record,
            },
            status=409,
            headers={"Retry-After": str(NOT_YET_RETRY_AFTER_S)},
        )
    if record is None:
        return _error(404, f"account {account_id} not found")
    return await answer(service, account_id, record)


async def health(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    return web.json_response({"alive": service.alive}, status=200 if service.alive else 503)


async def ready(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    sink = service.sink
    is_ready = service.alive and sink is not None and bool(sink.metrics.positions) and not service.sink_failing
    return web.json_response({"ready": is_ready}, status=200 if is_ready else 503)


async def metrics(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    sink = dataclasses.asdict(service.sink.metrics) if service.sink else {}
    return web.json_response(
        {
            "sink": sink,
            "sink_restarts": service.sink_restarts,
            "failure": service.failure,
            "reads_waiting": service.reads_waiting,
            "reads_waited": service.reads_waited,
            "reads_not_yet": service.reads_not_yet,
            "rebuild": None if service.rebuild_progress is None else dataclasses.asdict(service.rebuild_progress),
        }
    )


async def account(request: web.Request) -> web.Response:
    async def answer(service: QueryService, account_id: str, record: dict[str, Any] | None) -> web.Response:
        return web.json_response({"status": "ok", "account": record})

    return await _account_read(request, answer)


async def history(request: web.Request) -> web.Response:
    limit = _integer(request, "limit", views.HISTORY_PAGE_EVENTS_DEFAULT) or 0
    before, after = _integer(request, "before"), _integer(request, "after")
    if not 1 <= limit <= views.HISTORY_PAGE_EVENTS_MAX:
        return _error(400, f"limit must be within 1..{views.HISTORY_PAGE_EVENTS_MAX}")
    if before is not None and after is not None:
        return _error(400, "pass before or after, not both")

    async def answer(service: QueryService, account_id: str, record: dict[str, Any] | None) -> web.Response:
        page = await service.query(views.history, account_id, limit=limit, before=before, after=after)
        if not page.events and before is None and after is None:
            return _error(404, f"account {account_id} not found")
        return web.json_response(
            {
                "status": "ok",
                "account_id": account_id,
                "order": "asc" if after is not None else "desc",
                "events": page.events,
                "next_cursor": page.next_cursor,
            }
        )

    return await _account_read(request, answer, needs_account=False)


def _time_ms(text: str) -> int:
    if text.lstrip("-").isdigit():
        return int(text)
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


async def as_of(request: web.Request) -> web.Response:
    sequence = _integer(request, "sequence")
    at_text = request.query.get("at")
    if (sequence is None) == (at_text is None):
        return _error(400, "pass sequence=N or at=<milliseconds or ISO 8601 time>, one of them")
    try:
        at_ms = None if at_text is None else _time_ms(at_text)
    except ValueError:
        return _error(400, "at must be milliseconds since the epoch or an ISO 8601 time")

    async def answer(service: QueryService, account_id: str, record: dict[str, Any] | None) -> web.Response:
        state = await service.query(views.balance_as_of, account_id, sequence=sequence, at_ms=at_ms)
        if state is None:
            return _error(404, f"account {account_id} had no event by then")
        return web.json_response({"status": "ok", "as_of": {"sequence": sequence, "at_ms": at_ms}, "account": state})

    return await _account_read(request, answer, needs_account=False)


async def turnover(request: web.Request) -> web.Response:
    try:
        days = [
            None if not request.query.get(name) else datetime.date.fromisoformat(request.query[name])
            for name in ("from", "to")
        ]
    except ValueError:
        return _error(400, "from and to must be dates, YYYY-MM-DD")

    async def answer(service: QueryService, account_id: str, record: dict[str, Any] | None) -> web.Response:
        rows = await service.query(views.daily_turnover, account_id, from_day=days[0], to_day=days[1])
        assert record is not None
        return web.json_response(
            {"status": "ok", "account_id": account_id, "currency": record["currency"], "days": rows}
        )

    return await _account_read(request, answer)


async def rollup(request: web.Request) -> web.Response:
    async def answer(service: QueryService, account_id: str, record: dict[str, Any] | None) -> web.Response:
        result = await service.query(views.rollup, account_id, own=record)
        return web.json_response({"status": "ok", **result})

    return await _account_read(request, answer)


async def totals(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    sink = service.sink
    cut = sink.metrics.cut if sink is not None and request.query.get("cut") != "none" else None
    rows = await service.query(views.totals, cut=cut)
    return web.json_response(
        {
            "status": "ok",
            "consistent": cut is not None,
            "cut": cut,
            "cut_taken_at_ms": sink.metrics.cut_taken_at_ms if sink is not None and cut is not None else None,
            "currencies": rows,
        }
    )


async def reconciliation(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    if service.reconciling.locked():
        return _error(409, "a reconciliation is running; ask again when it is done")
    async with service.reconciling:
        try:
            report = await asyncio.get_running_loop().run_in_executor(None, service.run_reconcile)
        except TimeoutError as error:
            return _error(503, str(error))
    return web.json_response(report)


async def start_rebuild(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    progress = service.rebuild_progress
    if progress is not None and progress.phase not in FINISHED_PHASES:
        return web.json_response({"error": "a rebuild is running", "rebuild": dataclasses.asdict(progress)}, status=409)
    service.rebuild_progress = RebuildProgress()
    threading.Thread(target=service.run_rebuild, name="rebuild", daemon=True).start()
    return web.json_response({"rebuild": dataclasses.asdict(service.rebuild_progress)}, status=202)


async def rebuild_status(request: web.Request) -> web.Response:
    progress = request.app[STATE_KEY].rebuild_progress
    return web.json_response({"rebuild": None if progress is None else dataclasses.asdict(progress)})


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
    app.router.add_get("/accounts/{account_id}/history", history)
    app.router.add_get("/accounts/{account_id}/as-of", as_of)
    app.router.add_get("/accounts/{account_id}/turnover", turnover)
    app.router.add_get("/accounts/{account_id}/rollup", rollup)
    app.router.add_get("/totals", totals)
    app.router.add_get("/reconcile", reconciliation)
    app.router.add_post("/admin/rebuild", start_rebuild)
    app.router.add_get("/admin/rebuild", rebuild_status)
    return app


def run_query_service(settings: Settings) -> None:
    try:
        connect(settings.clickhouse_dsn)  # fail at once, with the reason, if another process holds the store
    except (StoreLockedError, StoreInUseError) as error:
        print(f"streamwallet query: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    web.run_app(create_app(settings), host=settings.query_host, port=settings.query_port, print=None)
