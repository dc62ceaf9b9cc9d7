"""A read the store fails (a database dropped under the service, a refused setting, a store
that stopped answering) is 503 with the stable code STORE_ERROR and a JSON body, never
aiohttp's bare 500; the service goes on answering what the store can answer."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from foundation.settings import Settings
from gateway.errors import ApiError, GatewayCode
from gateway.reads import Reader
from sinks import routes
from sinks.schema import migrate
from sinks.service import QueryService
from tests.unit.sinks.support import PARTITIONS


def query_service_app(clickhouse_dsn: str, database: str) -> web.Application:
    service = QueryService(Settings(partitions=PARTITIONS, clickhouse_dsn=clickhouse_dsn, clickhouse_database=database))
    service._loop = asyncio.get_running_loop()
    app = web.Application(middlewares=[routes.store_errors])
    app[routes.STATE_KEY] = service
    routes.add_routes(app.router)
    return app


async def test_a_read_the_store_fails_is_503_with_a_stable_code(clickhouse: Any, clickhouse_dsn: str) -> None:
    database = f"dropped_{uuid.uuid4().hex[:10]}"
    migrate(clickhouse, database)
    async with TestClient(TestServer(query_service_app(clickhouse_dsn, database))) as client:
        answered = await client.get("/accounts/alice")
        assert answered.status == 404  # the store answers: no such account
        clickhouse.command(f"DROP DATABASE {database} SYNC")
        response = await client.get("/accounts/alice")
        body = await response.json()
        assert response.status == 503, body
        assert body["code"] == "STORE_ERROR" and "store" in body["error"]
        assert response.headers["Retry-After"] == "1"
        migrate(clickhouse, database)  # the store is back: so are the answers
        assert (await client.get("/accounts/alice")).status == 404
    clickhouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")


async def test_the_gateways_currency_lookup_answers_a_failed_read_as_an_error_not_as_no_currency(
    clickhouse: Any, clickhouse_dsn: str
) -> None:
    """A command's outcome renders decimals in the currencies the gateway looks up in the view.
    An account the view does not hold has none (the outcome keeps its minor units); a read the
    query service failed, or could not be reached for, is a retryable error: the outcome never
    silently loses `balance` and `available`."""
    database = f"currency_{uuid.uuid4().hex[:10]}"
    migrate(clickhouse, database)
    async with TestServer(query_service_app(clickhouse_dsn, database)) as server, aiohttp.ClientSession() as session:
        reader = Reader(str(server.make_url("/")), session)
        assert await reader.currencies(["nobody"], []) == {}
        clickhouse.command(f"DROP DATABASE {database} SYNC")
        with pytest.raises(ApiError) as failed:
            await reader.currencies(["nobody"], [])
        assert failed.value.code is GatewayCode.QUERY_UNAVAILABLE, failed.value
        with socket.socket() as unreachable:  # bound, never listening: every connection refused
            unreachable.bind(("127.0.0.1", 0))
            reader = Reader(f"http://127.0.0.1:{unreachable.getsockname()[1]}", session)
            with pytest.raises(ApiError) as failed:
                await reader.currencies(["nobody"], [])
            assert failed.value.code is GatewayCode.QUERY_UNAVAILABLE, failed.value
