"""The HTTP gateway.

POST /v1/commands                {"type": "Deposit", "dedup_id": ..., "account_id": ..., "amount": "12.34",
                                  "currency": "USD"}   -> 200 with the result (accepted or rejected),
                                  400 for a request that is not a command, 202 if the result is late
GET  /v1/accounts/{id}[?min_seq=N]  the balance, from the query service (read-your-writes with min_seq)
GET  /health, /ready
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from foundation.settings import Settings
from gateway.client import LedgerClient, PendingLimitError
from gateway.translate import RequestError, result_json, to_command

log = logging.getLogger(__name__)
BODY_BYTES_MAX = 256 * 1024

CLIENT_KEY: web.AppKey[LedgerClient] = web.AppKey("ledger_client")
SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings")
SESSION_KEY: web.AppKey[aiohttp.ClientSession] = web.AppKey("session")


async def submit(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > BODY_BYTES_MAX:
        return web.json_response({"error": f"the body exceeds {BODY_BYTES_MAX} bytes"}, status=413)
    try:
        body = json.loads(await request.read())
        command = to_command(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response({"error": "the body is not JSON"}, status=400)
    except RequestError as error:
        return web.json_response({"error": str(error)}, status=400)
    client = request.app[CLIENT_KEY]
    settings = request.app[SETTINGS_KEY]
    try:
        future = client.submit(command)
    except PendingLimitError as error:
        return web.json_response({"error": str(error)}, status=503, headers={"Retry-After": "1"})
    try:
        result = await asyncio.wait_for(asyncio.wrap_future(future), settings.gateway_result_timeout_ms / 1000)
    except TimeoutError:
        client.forget(command.command_id)
        return web.json_response(
            {
                "status": "PENDING",
                "command_id": command.command_id,
                "message": "no result yet; ask again with a QueryCommand for this command id",
            },
            status=202,
        )
    return web.json_response(result_json(result))


READ_PATHS = (
    "/accounts/{account_id}",
    "/accounts/{account_id}/history",
    "/accounts/{account_id}/as-of",
    "/accounts/{account_id}/turnover",
    "/accounts/{account_id}/rollup",
    "/totals",
)


async def read(request: web.Request) -> web.Response:
    """Reads are the query service's: pass them through (status, body and Retry-After)."""
    settings = request.app[SETTINGS_KEY]
    session = request.app[SESSION_KEY]
    url = settings.query_url + request.path.removeprefix("/v1")
    async with session.get(url, params=request.query) as response:
        headers = {"Retry-After": response.headers["Retry-After"]} if "Retry-After" in response.headers else {}
        return web.Response(
            body=await response.read(), status=response.status, content_type="application/json", headers=headers
        )


async def health(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


async def ready(request: web.Request) -> web.Response:
    is_ready = CLIENT_KEY in request.app
    return web.json_response({"ready": is_ready}, status=200 if is_ready else 503)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=BODY_BYTES_MAX)
    app[SETTINGS_KEY] = settings

    async def lifecycle(app: web.Application) -> Any:
        loop = asyncio.get_running_loop()
        app[CLIENT_KEY] = await loop.run_in_executor(None, LedgerClient, settings)
        app[SESSION_KEY] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        yield
        await app[SESSION_KEY].close()
        await loop.run_in_executor(None, app[CLIENT_KEY].close)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/commands", submit)
    for path in READ_PATHS:
        app.router.add_get(f"/v1{path}", read)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    return app


def run_gateway(settings: Settings) -> None:
    web.run_app(create_app(settings), host=settings.gateway_host, port=settings.gateway_port, print=None)
