"""The query service's process: the service (sinks/service.py), its HTTP API
(sinks/routes.py) and the SQL endpoint for analysts (sinks/sql/) in one aiohttp
application, behind one check of who may ask what (sinks/access.py)."""

from __future__ import annotations

import sys
from typing import Any

from aiohttp import web

from foundation.settings import Settings
from sinks import routes
from sinks.access import Access
from sinks.clickhouse import StoreInUseError, StoreLockedError, connect
from sinks.schema import SchemaError
from sinks.service import QueryService, StoreReadOnlyError
from sinks.sql.endpoint import SqlEndpoint
from sinks.telemetry import SinkTelemetry


def create_app(settings: Settings) -> web.Application:
    telemetry = SinkTelemetry(settings)
    access = Access(settings)  # credentials and read rules: sinks/access.py
    # Outermost first: telemetry sees every answer, access refuses before the store is asked,
    # and a read the store fails is 503 STORE_ERROR (sinks/routes.py).
    app = web.Application(middlewares=[telemetry.middleware, access.middleware, routes.store_errors])
    service = QueryService(settings)
    service.telemetry = telemetry  # the sink reports each batch to it
    telemetry.service = service  # it reads the service's numbers when scraped
    app[routes.STATE_KEY] = service

    sql = SqlEndpoint(settings)

    async def lifecycle(app: web.Application) -> Any:
        await service.start()
        await sql.start()
        yield
        sql.stop()
        await service.stop()

    app.cleanup_ctx.append(lifecycle)
    routes.add_routes(app.router)
    telemetry.add_routes(app.router)
    sql.add_routes(app.router)
    return app


def run_query_service(settings: Settings) -> None:
    try:
        connect(settings.clickhouse_dsn)  # fail at once, with the reason, if another process holds the store
        web.run_app(create_app(settings), host=settings.query_host, port=settings.query_port, print=None)
    except (StoreLockedError, StoreInUseError, StoreReadOnlyError, SchemaError) as error:
        print(f"streamwallet query: {error}", file=sys.stderr)
        raise SystemExit(2) from error
