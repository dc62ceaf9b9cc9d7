"""The query service's HTTP API over the views (the service itself: `sinks/service.py`).

    GET  /health, /ready, /metrics.json              (metrics.json: the sink's lag, rate, positions, cut;
                                                      /metrics, Prometheus's: sinks/telemetry.py)
    GET  /accounts?limit=&cursor=&owner=             accounts in id order, a page at a time (opaque cursor)
    GET  /accounts/{id}                              balance and available balance
    GET  /accounts/{id}/history?limit=&before=|after=   events with the running balance, by cursor
    GET  /accounts/{id}/as-of?sequence=N | ?at=<ms or ISO 8601>   the account as of then
    GET  /accounts/{id}/turnover?from=&to=           daily turnover (UTC days, YYYY-MM-DD)
    GET  /accounts/{id}/rollup                       the account with its descendants summed in
    GET  /totals                                     per-currency totals and conservation, at a consistent cut
    GET  /reconcile                                  the reconciliation report (sinks/reconcile.py)
    POST /admin/rebuild, GET /admin/rebuild          rebuild every view from offset zero; its progress
    GET  /audit?limit=&cursor=&account_id=&principal_id=   the audit trail, oldest first (sinks/audit.py)

Every /accounts/{id}... read takes `min_seq` (read-your-writes; see sinks/service.py) and
answers 409 "not_yet" with Retry-After when the view has not reached it within the bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from clickhouse_connect.driver.exceptions import ClickHouseError

from ledger.commands import is_identifier
from ledger.principals import PRINCIPAL_ID_LENGTH_MAX
from sinks import audit, views
from sinks.account_cursor import BAD_CURSOR, BadCursorError, decode_cursor, encode_cursor
from sinks.rebuild import FINISHED_PHASES, RebuildProgress
from sinks.service import QueryService, TooManyWaitersError

STATE_KEY: web.AppKey[QueryService] = web.AppKey("query_service")
NOT_YET_RETRY_AFTER_S = 1


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


log = logging.getLogger(__name__)
STORE_ERROR = "STORE_ERROR"  # 503: the store failed this read; retry


@web.middleware
async def store_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A read the store failed (a dropped database, a refused setting, a store that stopped
    answering) is 503 STORE_ERROR with Retry-After, its cause in the log, never aiohttp's
    bare 500; the client's retry reaches the store again."""
    try:
        return await handler(request)
    except ClickHouseError as error:
        log.exception("the store failed %s %s", request.method, request.path)
        return web.json_response(
            {"error": f"the view's store failed this read ({type(error).__name__}); retry", "code": STORE_ERROR},
            status=503,
            headers={"Retry-After": "1"},
        )


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


Answer = Callable[[QueryService, str, dict[str, Any] | None], Awaitable[web.Response]]


async def _account_read(
    request: web.Request, answer: Answer, *, needs_account: bool = True, row_suffices: bool = False
) -> web.Response:
    """The read-your-writes frame of every per-account endpoint. Without min_seq, an
    endpoint that does not need the account's current state reads nothing extra. With
    `row_suffices` (the answer is the account's newest row, nothing else of the view), the
    row the sink has received answers min_seq before the view holds it (sinks/service.py)."""
    service = request.app[STATE_KEY]
    account_id = request.match_info["account_id"]
    min_seq = _integer(request, "min_seq", 0) or 0
    if min_seq <= 0 and not needs_account:
        return await answer(service, account_id, None)
    try:
        reached, record = await service.reached(account_id, min_seq, row_suffices=row_suffices)
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
    is_ready = request.app[STATE_KEY].ready
    return web.json_response({"ready": is_ready}, status=200 if is_ready else 503)


async def metrics(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    sink = dataclasses.asdict(service.sink.metrics) if service.sink else {}
    return web.json_response(
        {
            "read_only": service.read_only,
            "sink": sink,
            "sink_restarts": service.sink_restarts,
            "failure": service.failure,
            "reads_waiting": service.reads_waiting,
            "reads_waited": service.reads_waited,
            "reads_answered_by_sink": service.reads_answered_by_sink,
            "reads_answered_on_receipt": service.reads_answered_on_receipt,
            "reads_not_yet": service.reads_not_yet,
            "rebuild": None if service.rebuild_progress is None else dataclasses.asdict(service.rebuild_progress),
        }
    )


async def accounts(request: web.Request) -> web.Response:
    """A page of accounts in id order; `next_cursor` (opaque) asks for the next one."""
    limit = _integer(request, "limit", views.ACCOUNT_PAGE_ACCOUNTS_DEFAULT) or 0
    if not 1 <= limit <= views.ACCOUNT_PAGE_ACCOUNTS_MAX:
        return _coded_error(400, "BAD_PARAMETER", f"limit must be within 1..{views.ACCOUNT_PAGE_ACCOUNTS_MAX}")
    cursor, owner = request.query.get("cursor"), request.query.get("owner")
    if owner is not None and not is_identifier(owner, PRINCIPAL_ID_LENGTH_MAX):
        return _coded_error(
            400, "BAD_PARAMETER", f"owner must be a principal id (1..{PRINCIPAL_ID_LENGTH_MAX} characters)"
        )
    try:
        after = None if cursor is None else decode_cursor(cursor)
    except BadCursorError as error:
        return _coded_error(400, BAD_CURSOR, str(error))
    service = request.app[STATE_KEY]
    try:
        page = await service.query(views.account_page, limit=limit, after=after, owner=owner)
    except views.OwnerFilterUnavailableError as error:
        return _coded_error(400, "BAD_PARAMETER", str(error))
    next_cursor = None if page.last_account_id is None else encode_cursor(page.last_account_id)
    return web.json_response({"status": "ok", "accounts": page.accounts, "next_cursor": next_cursor})


def _coded_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": message, "code": code}, status=status)


async def account(request: web.Request) -> web.Response:
    async def answer(service: QueryService, account_id: str, record: dict[str, Any] | None) -> web.Response:
        return web.json_response({"status": "ok", "account": record})

    return await _account_read(request, answer, row_suffices=True)


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


def _refused_read_only(service: QueryService, what: str) -> web.Response | None:
    if not service.read_only:
        return None
    return _error(409, f"this query service serves reads only (STREAMWALLET_QUERY_READ_ONLY); {what} the writer")


async def reconciliation(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY]
    if refusal := _refused_read_only(service, "reconcile against"):
        return refusal
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
    if refusal := _refused_read_only(service, "rebuild on"):
        return refusal
    progress = service.rebuild_progress
    if progress is not None and progress.phase not in FINISHED_PHASES:
        return web.json_response({"error": "a rebuild is running", "rebuild": dataclasses.asdict(progress)}, status=409)
    service.rebuild_progress = RebuildProgress()
    threading.Thread(target=service.run_rebuild, name="rebuild", daemon=True).start()
    return web.json_response({"rebuild": dataclasses.asdict(service.rebuild_progress)}, status=202)


async def rebuild_status(request: web.Request) -> web.Response:
    progress = request.app[STATE_KEY].rebuild_progress
    return web.json_response({"rebuild": None if progress is None else dataclasses.asdict(progress)})


async def audit_trail(request: web.Request) -> web.Response:
    """A page of the audit trail, oldest first; `next_cursor` (opaque) asks for the next one."""
    limit = _integer(request, "limit", audit.AUDIT_PAGE_ROWS_DEFAULT) or 0
    if not 1 <= limit <= audit.AUDIT_PAGE_ROWS_MAX:
        return _coded_error(400, "BAD_PARAMETER", f"limit must be within 1..{audit.AUDIT_PAGE_ROWS_MAX}")
    filters = {name: request.query.get(name) for name in ("account_id", "principal_id")}
    for name, value in filters.items():
        if value is not None and not is_identifier(value, PRINCIPAL_ID_LENGTH_MAX):
            return _coded_error(
                400, "BAD_PARAMETER", f"{name} must be an id of 1..{PRINCIPAL_ID_LENGTH_MAX} characters"
            )
    cursor = request.query.get("cursor")
    try:
        after = None if cursor is None else audit.AuditCursor.decode(cursor)
    except ValueError as error:
        return _coded_error(400, BAD_CURSOR, str(error))
    page = await request.app[STATE_KEY].query(audit.audit_page, limit=limit, after=after, **filters)
    return web.json_response({"status": "ok", "entries": page.entries, "next_cursor": page.next_cursor})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/health", health)
    router.add_get("/ready", ready)
    router.add_get("/metrics.json", metrics)
    router.add_get("/accounts", accounts)
    router.add_get("/accounts/{account_id}", account)
    router.add_get("/accounts/{account_id}/history", history)
    router.add_get("/accounts/{account_id}/as-of", as_of)
    router.add_get("/accounts/{account_id}/turnover", turnover)
    router.add_get("/accounts/{account_id}/rollup", rollup)
    router.add_get("/totals", totals)
    router.add_get("/reconcile", reconciliation)
    router.add_post("/admin/rebuild", start_rebuild)
    router.add_get("/admin/rebuild", rebuild_status)
    router.add_get("/audit", audit_trail)
