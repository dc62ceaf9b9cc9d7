"""The query service's state: it owns the ClickHouse store (embedded chDB by default), runs
the events sink and the audit sink (sinks/audit.py) on threads and restarts them after a
failure, makes reads wait for their writes, and runs reconciliation and rebuilds. Its HTTP
face is `sinks/routes.py`; the process is put together in `sinks/app.py`.

Read-your-writes: every /accounts/{id}... read takes `min_seq`, the sequence a command's
result returned for that account. The read waits until the view holds that event of the
account, at most `read_wait_ms_max`, then answers; after the bound it answers 409 with
status "not_yet" (and Retry-After). We wait on the view rather than read the owning
worker's table (Faust's table routing): the view is what history, as-of, turnover and
roll-ups read too, so one rule makes every answer consistent with the write, and the
command side serves no reads. The wait costs no polling and cannot miss a wake-up: the
reader registers before it looks, and the sink wakes the readers of exactly the accounts
each written batch touched.

The account's own read (GET /accounts/{id}) needs one row, not the view: the account after
its newest event. The sink hands the service each small batch's rows as it receives them,
before its inserts, and the service keeps the newest row of each account (a bounded cache).
Such a read is answered with that row once it reaches min_seq, without waiting for
ClickHouse's inserts, and without asking ClickHouse at all when the row is already there.
The row is of an event the ledger committed (the sink reads read_committed), and it is the
row the view holds once the batch is written; a sink that fails before then writes it again
when it restarts. The account's read without min_seq takes the received row too, so it never
goes back behind a row an earlier read was answered with; every other read reads the view.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from clickhouse_connect.driver.exceptions import DatabaseError

from foundation.record_cache import RecordCache
from foundation.settings import Settings
from sinks import views
from sinks.audit import AuditSink
from sinks.clickhouse import ClientPool, connect, redacted
from sinks.events import EventSink, Written, passed
from sinks.incoming import Received
from sinks.rebuild import RebuildProgress, rebuild
from sinks.reconcile import reconcile
from sinks.schema import check_schema, migrate

if TYPE_CHECKING:
    from sinks.telemetry import SinkTelemetry

log = logging.getLogger(__name__)
READONLY_CODE = 164  # ClickHouse's READONLY: the store refuses writes

QUERY_THREADS = 8  # readers running at once, each with its own client
READ_WAITERS_MAX = 10_000  # reads waiting for min_seq at once; more get 503
SINK_RESTART_DELAY_S_MIN = 0.5
SINK_RESTART_DELAY_S_MAX = 30.0
SINK_STOP_TIMEOUT_S = 30.0
REACH_TIMEOUT_S = 120.0  # reconciliation waits this long at most for the sink to pass its cut
REACH_POLL_S = 0.05
READ_ONLY_POLL_S = 0.05  # a read-only service has no sink to wake its readers: they look again this often
# Accounts whose newest received row the service keeps for balance reads (between half and
# all of them, the recently written; a row is ~1 KiB with its values): the accounts being
# written and read again at once, not the whole ledger.
RECEIVED_ROWS_MAX = 20_000

# A woken read's answer: the account as the sink's row says, and whether the view may not
# hold that row yet (the sink received it, its inserts are still to come).
Woken = tuple[dict[str, Any], bool]


def _retrieved(task: asyncio.Future[Any]) -> None:
    """A look in the view no read waits for any more: its outcome (an error too) is dropped."""
    if not task.cancelled():
        task.exception()


class StoreReadOnlyError(RuntimeError):
    """The store refuses writes, and this service was to run the sink."""


class TooManyWaitersError(RuntimeError):
    pass


class QueryService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = settings.clickhouse_database
        self.read_only = settings.query_read_only  # reads only: no sink, no migrations, no rebuild
        self.pool = ClientPool(settings.clickhouse_dsn)
        self.executor = concurrent.futures.ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="query")
        self.sink: EventSink | None = None
        self.audit_sink: AuditSink | None = None
        self._audit_supervisor: threading.Thread | None = None
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
        self._started = False
        self._sink_control = threading.Lock()  # pausing and (re)starting the sink exclude each other
        # account -> its reads waiting for min_seq: (min_seq, woken with the sink's row or None,
        # whether the row it received suffices or the view must hold it)
        self._waiters: dict[str, list[tuple[int, asyncio.Future[Woken | None], bool]]] = {}
        # account -> (sequence, account_latest row): the newest row the sink received for it
        self._received: RecordCache[str] = RecordCache(RECEIVED_ROWS_MAX)
        self.reads_waiting = 0
        self.reads_waited = 0  # reads with min_seq that found the view behind and waited
        self.reads_answered_by_sink = 0  # answered with a row of the sink's (no look in the view, or no second)
        self.reads_answered_on_receipt = 0  # of those, with a row the view may not hold yet
        self.reads_not_yet = 0  # ... and were answered "not yet"
        self.reconciling = asyncio.Lock()
        self.reconcile_runs = {"ok": 0, "mismatch": 0}  # reconciliations run here, by outcome
        self.reconcile_differences: int | None = None  # of the last one run here (None: none yet)
        self.telemetry: SinkTelemetry | None = None  # set by the process (sinks/app.py)

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        sink_client = await self._loop.run_in_executor(
            None,
            functools.partial(connect, self.settings.clickhouse_dsn, session=True),  # the sink's temporary table
        )
        if self.read_only:
            version = await self._loop.run_in_executor(None, check_schema, sink_client, self.database)
            log.info("serving reads only, of a store at schema version %d written by another process", version)
            self._started = True
            return
        try:
            applied = await self._loop.run_in_executor(None, migrate, sink_client, self.database)
        except DatabaseError as error:
            if getattr(error, "code", None) != READONLY_CODE:
                raise
            raise StoreReadOnlyError(
                f"the store at {redacted(self.settings.clickhouse_dsn)} refuses writes, so this service cannot run "
                f"the sink; set STREAMWALLET_QUERY_READ_ONLY=1 to serve reads only. ClickHouse said: {error}"
            ) from error
        if applied:
            log.info("applied schema migrations %s", applied)
        self._started = True
        self._resumed.set()
        self._supervisor = threading.Thread(
            target=self._supervise, args=(sink_client,), name="events-sink", daemon=True
        )
        self._supervisor.start()
        self._audit_supervisor = threading.Thread(target=self._supervise_audit, name="audit-sink", daemon=True)
        self._audit_supervisor.start()

    async def stop(self) -> None:
        self._closing.set()
        self._sink_stop.set()
        self._resumed.set()
        if self._supervisor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._supervisor.join, SINK_STOP_TIMEOUT_S)
        if self._audit_supervisor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._audit_supervisor.join, SINK_STOP_TIMEOUT_S)
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
            sink = EventSink(
                self.settings,
                client,
                on_written=self._notify,
                on_received=self._notify_received,
                telemetry=self.telemetry,
            )
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

    def _supervise_audit(self) -> None:
        """Run the audit sink (sinks/audit.py) until the service closes; after a failure
        start it again (it resumes from its progress in the store), backing off up to a bound."""
        delay = SINK_RESTART_DELAY_S_MIN
        while not self._closing.is_set():
            try:
                self.audit_sink = AuditSink(self.settings, connect(self.settings.clickhouse_dsn, session=True))
                self.audit_sink.run(self._closing)
            except Exception:  # logged, and the audit sink restarts
                log.exception("the audit sink failed; restarting in %.1fs", delay)
                self._closing.wait(delay)
                delay = min(2 * delay, SINK_RESTART_DELAY_S_MAX)

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
        if self.read_only:
            return self._started and not self._closing.is_set()
        return self._supervisor is not None and self._supervisor.is_alive()

    @property
    def ready(self) -> bool:
        """Answering reads: a writer once its sink has positions and is not failing."""
        if self.read_only:
            return self.alive
        sink = self.sink
        return self.alive and sink is not None and bool(sink.metrics.positions) and not self.sink_failing

    # -- reads ---------------------------------------------------------------------------------

    async def query(self, function: Callable[..., Any], *args: Any, **keywords: Any) -> Any:
        def run() -> Any:
            return function(self.pool.client(), self.database, *args, **keywords)

        return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    def _notify(self, written: Written) -> None:
        """Called on the sink's thread once a batch is written (visible to queries)."""
        if self._loop is not None and written.newest:
            self._loop.call_soon_threadsafe(self._wake, written.newest, written.latest)

    def _wake(self, newest: Mapping[str, int], latest: Mapping[str, list[Any]]) -> None:
        """Wake the reads this batch satisfied. A read whose account's row the sink wrote is
        handed the account as that row says (the row the view now holds, the newest of the
        account: one sink writes each partition, and the row is of the batch's newest sequence
        for it); the others look in the view again."""
        if not latest:  # ClickHouse decoded the batch: a row kept for its accounts may be older
            kept = self._received
            for account_id, sequence in newest.items():
                known = kept.get(account_id)
                if known is not None and known[0] <= sequence:
                    kept.discard(account_id)  # (a newer one, of the batch consumed since, stays)
        if not self._waiters:
            return
        for account_id, sequence in newest.items():
            waiting = self._waiters.get(account_id)
            if not waiting:
                continue
            row = latest.get(account_id)
            woken = None if row is None else (views.latest_state(row), False)
            for min_seq, future, _ in waiting:
                if min_seq <= sequence and not future.done():
                    future.set_result(woken)

    def _notify_received(self, received: Received) -> None:
        """Called on the sink's thread with a small batch's rows, before its inserts."""
        if self._loop is not None and received.latest:
            self._loop.call_soon_threadsafe(self._receive, received.newest, received.latest)

    def _receive(self, newest: Mapping[str, int], latest: Mapping[str, list[Any]]) -> None:
        """Keep each account's newest row (a batch a restarted sink repeats is older: kept
        rows stay), and hand it to the waiting reads that need only the row."""
        kept = self._received
        for account_id, row in latest.items():
            sequence = newest[account_id]
            known = kept.get(account_id)
            if known is None or known[0] < sequence:
                kept.put(account_id, (sequence, row))
            waiting = self._waiters.get(account_id)
            if not waiting:
                continue
            woken: Woken | None = None
            for min_seq, future, row_suffices in waiting:
                if row_suffices and min_seq <= sequence and not future.done():
                    woken = woken or (views.latest_state(row), True)
                    future.set_result(woken)

    def _answered_by_sink(self, woken: Woken) -> tuple[bool, dict[str, Any]]:
        state, on_receipt = woken
        self.reads_answered_by_sink += 1
        self.reads_answered_on_receipt += on_receipt
        return True, state

    async def reached(
        self, account_id: str, min_seq: int, *, row_suffices: bool = False
    ) -> tuple[bool, dict[str, Any] | None]:
        """Wait, at most read_wait_ms_max, until the view holds event `min_seq` of the
        account, or, with `row_suffices`, until the sink has received it (the module's
        docstring). Returns (reached, the account as the view or the sink's row has it)."""
        # The received row first, also without min_seq: it is never older than the view (a
        # batch ClickHouse decoded drops the rows it outdates), so a read never goes back behind
        # a row an earlier read was answered with (test_read_your_writes.py, "received before its inserts").
        if row_suffices and (known := self._received.get(account_id)) is not None and known[0] >= min_seq:
            return self._answered_by_sink((views.latest_state(known[1]), True))
        if min_seq <= 0:
            return True, await self.query(views.balance, account_id)
        if self.reads_waiting >= READ_WAITERS_MAX:
            raise TooManyWaitersError(f"{READ_WAITERS_MAX} reads already wait for the view")
        deadline = time.monotonic() + self.settings.read_wait_ms_max / 1000
        loop = asyncio.get_running_loop()
        waited = False
        while True:
            # Registered before looking: a batch written after the look wakes this reader.
            future: asyncio.Future[Woken | None] = loop.create_future()
            entry = (min_seq, future, row_suffices)
            self._waiters.setdefault(account_id, []).append(entry)
            self.reads_waiting += 1
            try:
                # The look and the wake race: the sink's row answers at once even while the
                # look waits for a store busy with inserts and merges.
                look = asyncio.ensure_future(self.query(views.balance, account_id))
                await asyncio.wait((look, future), return_when=asyncio.FIRST_COMPLETED)
                if future.done() and (woken := future.result()) is not None:
                    look.add_done_callback(_retrieved)
                    if not waited:
                        self.reads_waited += 1
                    return self._answered_by_sink(woken)
                record = await look
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
                    woken = await asyncio.wait_for(
                        future, min(remaining, READ_ONLY_POLL_S) if self.read_only else remaining
                    )
                    if woken is not None:  # the sink's row for it: no second look in the view
                        return self._answered_by_sink(woken)
                except TimeoutError:
                    if time.monotonic() < deadline:
                        continue  # read-only: no sink wakes this reader, so it looks again
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
        report = reconcile(self.settings, client, database=self.database, reach=self.reach)
        self.reconcile_differences = len(report.differences)
        self.reconcile_runs["ok" if report.ok else "mismatch"] += 1
        return report.to_json()

    def run_rebuild(self) -> None:
        client = connect(self.settings.clickhouse_dsn, session=True)  # its sink's temporary table

        def exchange(swap: Callable[[], None]) -> None:
            self.pause_sink()
            try:
                swap()
            finally:
                self.resume_sink()

        def report(progress: RebuildProgress) -> None:
            self.rebuild_progress = dataclasses.replace(progress)

        rebuild(self.settings, client, database=self.database, report=report, exchange=exchange, stop=self._closing)
