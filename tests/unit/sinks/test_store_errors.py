"""A read the store fails (a database dropped under the service, a refused setting, a store
that stopped answering) is 503 with the stable code STORE_ERROR and a JSON body, never
aiohttp's bare 500; the service goes on answering what the store can answer."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from foundation.settings import Settings
from sinks import routes
from sinks.schema import migrate
from sinks.service import QueryService
from tests.unit.sinks.support import PARTITIONS


async def test_a_read_the_store_fails_is_503_with_a_stable_code(clickhouse: Any, clickhouse_dsn: str) -> None:
    database = f"dropped_{uuid.uuid4().hex[:10]}"
    migrate(clickhouse, database)
    service = QueryService(Settings(partitions=PARTITIONS, clickhouse_dsn=clickhouse_dsn, clickhouse_database=database))
    service._loop = asyncio.get_running_loop()
    app = web.Application(middlewares=[routes.store_errors])
    app[routes.STATE_KEY] = service
    routes.add_routes(app.router)
    async with TestClient(TestServer(app)) as client:
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
