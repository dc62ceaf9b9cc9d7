"""The HTTP gateway: routes, the error body on every answer, and its life cycle.

POST /v1/commands                        submit a command (gateway/command_handlers.py)
POST /v1/commands/bulk                   submit up to 1,000 commands, one result each (gateway/bulk.py)
GET  /v1/commands/{command_id}?account_id=   the outcome of an earlier command
GET  /v1/accounts/{id}[/history|/as-of|/turnover|/rollup], /v1/totals   reads (gateway/reads.py)
GET  /v1/openapi.json                    the contract (gateway/openapi.py)
GET  /v1/status, /health, /ready         counters (pending submits), liveness, readiness

Every route but /health, /ready and /v1/openapi.json needs a credential (gateway/
authentication.py: 401), is counted against its principal's rate (gateway/rate_limits.py:
429) and is decided for its roles (gateway/authorization.py: 403). Each 401 and 403 the
gateway decides is an event on the audit trail (gateway/audit.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from foundation.settings import Settings
from gateway import audit, authorization, bulk, command_handlers, telemetry
from gateway.authentication import PUBLIC_PATHS, Authenticator
from gateway.client import LedgerClient
from gateway.errors import ApiError, GatewayCode, error_body, retry_headers
from gateway.limits import BODY_BYTES_MAX
from gateway.openapi import document
from gateway.principals import RecentSenders
from gateway.rate_limits import RateLimiter
from gateway.reads import AUTHORIZATION, READ_ROUTES, Reader, ReadRoute
from ledger.principals import Principal

log = logging.getLogger(__name__)

CLIENT_KEY: web.AppKey[LedgerClient] = web.AppKey("ledger_client")
SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings")
READER_KEY: web.AppKey[Reader] = web.AppKey("reader")
AUTHENTICATOR_KEY: web.AppKey[Authenticator] = web.AppKey("authenticator")
RATE_LIMITER_KEY: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")
SENDERS_KEY: web.AppKey[RecentSenders] = web.AppKey("recent_senders")
PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# aiohttp's own refusals (no route, wrong method, body too large), in the API's error body.
HTTP_ERROR_CODES: dict[int, GatewayCode] = {
    404: GatewayCode.NOT_FOUND,
    405: GatewayCode.METHOD_NOT_ALLOWED,
    413: GatewayCode.BODY_TOO_LARGE,
    415: GatewayCode.UNSUPPORTED_MEDIA_TYPE,
}
PASSED_HEADERS = ("Allow",)


def error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers())


@web.middleware
async def error_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error, whoever raised it, as {"code", "message", "details"}."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = HTTP_ERROR_CODES.get(error.status, GatewayCode.BAD_REQUEST)
        headers = {name: error.headers[name] for name in PASSED_HEADERS if name in error.headers}
        return web.json_response(
            error_body(code, error.reason, {"method": request.method} if error.status == 405 else {}),
            status=error.status,
            headers={**headers, **retry_headers(error.status, code)},
        )
    except asyncio.CancelledError:
        raise
    except Exception:  # a bug: logged with its trace, answered with the error body
        log.exception("unexpected error answering %s %s", request.method, request.rel_url)
        return error_response(ApiError(GatewayCode.INTERNAL, "unexpected error in the gateway; it is logged"))


@web.middleware
async def authenticated(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who asks (401 if nobody we can verify), and within its rate (429): before any handler."""
    if request.rel_url.path in PUBLIC_PATHS:
        return await handler(request)
    principal = request.app[AUTHENTICATOR_KEY].principal(request.headers.getall("Authorization", []))
    limiter = request.app[RATE_LIMITER_KEY]
    retry_after_s = limiter.take(principal.principal_id)
    if retry_after_s is not None:
        raise ApiError(
            GatewayCode.RATE_LIMITED,
            f"more than {limiter.rate_per_s} requests per second (bursts of {limiter.burst}) from this principal",
            details={"rate_per_s": limiter.rate_per_s, "burst": limiter.burst, "retry_after_s": retry_after_s},
            headers={"Retry-After": str(retry_after_s)},
        )
    request[PRINCIPAL_KEY] = principal
    if request.rel_url.path in authorization.OPERATIONS_PATHS:
        authorization.check_operations(principal, change=request.method != "GET")
    return await handler(request)


@web.middleware
async def audited(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request the gateway refuses with 401 or 403 goes on the audit trail (gateway/audit.py)."""
    try:
        return await handler(request)
    except ApiError as error:
        if audit.is_refusal(error):
            _audit_refusal(request, error)
        raise


def _audit_refusal(request: web.Request, error: ApiError) -> None:
    event = audit.refusal(request, error, request.get(PRINCIPAL_KEY))
    client = request.app.get(CLIENT_KEY)
    if client is None:
        log.warning("refused %s %s before the gateway was ready: not on the audit trail", request.method, event.action)
        return
    client.audit(event)


# -- handlers ------------------------------------------------------------------------------------


def _client(request: web.Request) -> LedgerClient:
    client = request.app.get(CLIENT_KEY)
    if client is None:
        raise ApiError(GatewayCode.NOT_READY, "the gateway is starting")
    return client


def _submitting(request: web.Request) -> command_handlers.Submitting:
    return command_handlers.Submitting(
        principal=request[PRINCIPAL_KEY],
        client=_client(request),
        timeout_s=request.app[SETTINGS_KEY].gateway_result_timeout_ms / 1000,
        senders=request.app[SENDERS_KEY],
    )


async def submit(request: web.Request) -> web.Response:
    return await command_handlers.submit(request, _submitting(request))


async def submit_bulk(request: web.Request) -> web.Response:
    return await bulk.submit_bulk(request, _submitting(request))


async def outcome(request: web.Request) -> web.Response:
    return await command_handlers.outcome(request, _submitting(request), reader=request.app[READER_KEY])


async def read(request: web.Request, *, route: ReadRoute) -> web.Response:
    principal = request[PRINCIPAL_KEY]
    if route.per_account or route.listing:
        authorization.check_account_read(principal)
    else:
        authorization.check_totals_read(principal)
    account_id = request.match_info.get("account_id") if route.per_account else None
    credential = request.headers.getall(AUTHORIZATION, [])
    reader = request.app[READER_KEY]
    return web.json_response(
        await reader.read(route, account_id, request.query, principal=principal, credential=credential)
    )


def _status(request: web.Request) -> dict[str, Any]:
    client = request.app.get(CLIENT_KEY)
    reader = request.app.get(READER_KEY)
    return {
        "ready": client is not None,
        "pending": 0 if client is None else client.pending(),
        "pending_max": request.app[SETTINGS_KEY].gateway_pending_max if client is None else client.pending_max,
        "reads_in_flight": 0 if reader is None else reader.reads.count,
    }


async def status(request: web.Request) -> web.Response:
    return web.json_response(_status(request))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


async def health(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


async def ready(request: web.Request) -> web.Response:
    answer = _status(request)
    return web.json_response(answer, status=200 if answer["ready"] else 503)


# -- the application -----------------------------------------------------------------------------


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=BODY_BYTES_MAX, middlewares=[error_bodies, audited, authenticated])
    app[SETTINGS_KEY] = settings
    app[AUTHENTICATOR_KEY] = Authenticator(settings)
    app[RATE_LIMITER_KEY] = RateLimiter(
        rate_per_s=settings.gateway_rate_limit_per_s, burst=settings.gateway_rate_limit_burst
    )
    app[SENDERS_KEY] = RecentSenders()
    telemetry.install(app, settings)  # metrics, traces, log level: gateway/telemetry.py

    async def lifecycle(app: web.Application) -> Any:
        loop = asyncio.get_running_loop()
        session = aiohttp.ClientSession()
        app[READER_KEY] = Reader(settings.query_url, session)
        app[CLIENT_KEY] = await loop.run_in_executor(None, LedgerClient, settings)
        yield
        await session.close()
        await loop.run_in_executor(None, app[CLIENT_KEY].close)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/commands", submit)
    app.router.add_post("/v1/commands/bulk", submit_bulk)
    app.router.add_get("/v1/commands/{command_id}", outcome, allow_head=False)
    for route in READ_ROUTES:
        app.router.add_get(route.path, functools.partial(read, route=route), allow_head=False)
    app.router.add_get("/v1/openapi.json", openapi, allow_head=False)
    app.router.add_get("/v1/status", status, allow_head=False)
    app.router.add_get("/health", health, allow_head=False)
    app.router.add_get("/ready", ready, allow_head=False)
    return app


def run_gateway(settings: Settings) -> None:
    web.run_app(create_app(settings), host=settings.gateway_host, port=settings.gateway_port, print=None)
