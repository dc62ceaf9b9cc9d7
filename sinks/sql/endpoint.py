"""ClickHouse's HTTP interface, the part clickhouse-connect and Grafana's ClickHouse data
source use, on the query service's port, over its embedded store:

    GET  /?query=...             POST /  (the query in the body, after ?query= if both)
    GET  /ping, GET / without a query      "Ok.\\n"

URL parameters: `query`, `database` (default: the views' database), `default_format`
(default TabSeparated; a FORMAT clause in the query wins), `query_id` (echoed, generated
if absent), `param_<name>` (the value of `{name:Type}`), `user`/`password`, and any
other name is a ClickHouse setting (see sinks/sql/policy.py for which pass).
`session_id`, `session_timeout`, `session_check`, `wait_end_of_query`,
`client_protocol_version`, `enable_http_compression`, `send_progress_in_http_headers`,
`http_headers_progress_interval_ms`, `cancel_http_readonly_queries_on_client_close`,
`buffer_size`, `quota_key`, `role`, `stacktrace`, `close_session` are accepted and
ignored: every query is answered whole, uncompressed, outside any session. Request
headers `X-ClickHouse-User`, `X-ClickHouse-Key`, `X-ClickHouse-Database`,
`X-ClickHouse-Format` and Basic authentication are read like the parameters. A
multipart/form-data body may carry `query` and `param_*` fields.

Answers carry `X-ClickHouse-Query-Id`, `X-ClickHouse-Format`, `X-ClickHouse-Timezone`,
`X-ClickHouse-Server-Display-Name` and `X-ClickHouse-Summary`; errors are ClickHouse's
`Code: N. DB::Exception: ...` text with `X-ClickHouse-Exception-Code` and the HTTP
status ClickHouse gives that code (sinks/sql/errors.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import socket
import uuid
from urllib.parse import urlparse

from aiohttp import BasicAuth, BodyPartReader, web
from aiohttp.web import RequestPayloadError

from foundation.settings import Settings
from sinks.clickhouse import embedded_folder
from sinks.sql import engine
from sinks.sql.errors import (
    AUTHENTICATION_FAILED,
    BAD_ARGUMENTS,
    NOT_IMPLEMENTED,
    QUERY_IS_TOO_LARGE,
    SYNTAX_ERROR,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    UNKNOWN_EXCEPTION,
    ClickHouseError,
)
from sinks.sql.policy import Credentials, Limits, may_run_sql

log = logging.getLogger(__name__)

SQL_QUERIES_RUNNING_MAX = 2  # queries running at once (the machine's cores); each may use sql_threads_max
SQL_QUERIES_WAITING_MAX = 16  # queries waiting for a turn; more are refused (TOO_MANY_SIMULTANEOUS_QUERIES)
SQL_QUERY_BYTES_MAX = 256 * 1024  # ClickHouse's own max_query_size
SQL_FORM_BYTES_MAX = 1024 * 1024  # a multipart body: the query and the parameters' values
DEFAULT_FORMAT = "TabSeparated"
OK = "Ok.\n"

TRANSPORT_PARAMETERS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "user",
        "password",
        "session_id",
        "session_timeout",
        "session_check",
        "wait_end_of_query",
        "client_protocol_version",
        "enable_http_compression",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "buffer_size",
        "quota_key",
        "role",
        "stacktrace",
        "close_session",
        "compress",
        "decompress",
    }
)
PARAMETER_PREFIX = "param_"
QUERY_ID = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII: echoed in X-ClickHouse-Query-Id
DECODED_ENCODINGS = frozenset({"identity", "gzip", "deflate"})  # aiohttp inflates these before we read
BINARY_FORMATS = ("Native", "RowBinary", "Parquet", "Arrow", "ORC", "Avro", "Protobuf", "MsgPack", "CapnProto", "BSON")


class SqlEndpoint:
    """Admits queries (a bounded number at once), runs each on the SQL executor and
    answers in ClickHouse's HTTP protocol."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = embedded_folder(settings.clickhouse_dsn)
        self.limits = Limits.from_settings(settings)
        self.executor = concurrent.futures.ThreadPoolExecutor(SQL_QUERIES_RUNNING_MAX, thread_name_prefix="sql")
        self.admitted = 0  # running or waiting; changed on the event loop only
        self.version = "unknown"
        self.timezone = "UTC"
        self.display_name = socket.gethostname()

    async def start(self) -> None:
        if self.folder is not None:
            identity = await asyncio.get_running_loop().run_in_executor(
                self.executor, engine.engine_identity, self.folder
            )
            self.version, self.timezone = identity

    def stop(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self.handle)
        router.add_post("/", self.handle)
        router.add_get("/ping", ping)

    async def handle(self, request: web.Request) -> web.Response:
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        try:
            if not QUERY_ID.fullmatch(query_id):  # it is echoed in a header
                query_id = str(uuid.uuid4())
                raise ClickHouseError.of(BAD_ARGUMENTS, "query_id must be 1 to 200 printable ASCII characters")
            if request.method == "GET" and "query" not in request.query:
                return web.Response(text=OK)
            query = await self._admit(request)
            answer = await self._run(query)
        except ClickHouseError as error:
            log.info("sql query %s refused or failed: %s", query_id, error)
            return self._error(error, query_id)
        except Exception as error:  # never a bare 500: the client gets a ClickHouse error with a code
            log.exception("sql query %s failed unexpectedly", query_id)
            return self._error(ClickHouseError.of(UNKNOWN_EXCEPTION, f"{type(error).__name__}: {error}"), query_id)
        headers = {
            **self._common_headers(query_id),
            "Content-Type": _content_type(answer.format),
            "X-ClickHouse-Format": answer.format,
            "X-ClickHouse-Summary": json.dumps(answer.summary, separators=(",", ":")),
        }
        return web.Response(body=answer.body, headers=headers)

    async def _admit(self, request: web.Request) -> engine.SqlQuery:
        """The request as a query this endpoint will run, or the ClickHouseError refusing it."""
        credentials = _credentials(request)
        refusal = may_run_sql(peer=request.remote, credentials=credentials)
        if refusal is not None:
            raise refusal
        return await read_query(request, default_database=self.settings.clickhouse_database)

    async def _run(self, query: engine.SqlQuery) -> engine.SqlAnswer:
        folder = self.folder
        if folder is None:
            server = urlparse(self.settings.clickhouse_dsn)
            raise ClickHouseError.of(
                NOT_IMPLEMENTED,
                f"this query service reads a ClickHouse server ({server.hostname}:{server.port}); send SQL to it",
            )
        if self.admitted >= SQL_QUERIES_RUNNING_MAX + SQL_QUERIES_WAITING_MAX:
            raise ClickHouseError.of(
                TOO_MANY_SIMULTANEOUS_QUERIES,
                f"Too many simultaneous queries. Maximum: {SQL_QUERIES_RUNNING_MAX + SQL_QUERIES_WAITING_MAX}",
            )
        self.admitted += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, engine.run, folder, query, self.limits)
        finally:
            self.admitted -= 1

    def _common_headers(self, query_id: str) -> dict[str, str]:
        return {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.timezone,
            "X-ClickHouse-Server-Display-Name": self.display_name,
        }

    def _error(self, error: ClickHouseError, query_id: str) -> web.Response:
        headers = {
            **self._common_headers(query_id),
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(error.code),
        }
        return web.Response(status=error.http_status, text=error.body(self.version), headers=headers)


async def ping(request: web.Request) -> web.Response:
    return web.Response(text=OK)


async def read_query(request: web.Request, *, default_database: str) -> engine.SqlQuery:
    """The query, its parameters and settings from the URL, the headers and the body."""
    fields: dict[str, str] = dict(request.query)
    body, utf8 = "", True
    if request.method == "POST":
        encoding = request.headers.get("Content-Encoding", "identity").lower()
        if encoding not in DECODED_ENCODINGS:
            raise ClickHouseError.of(
                NOT_IMPLEMENTED,
                f"request bodies in Content-Encoding {encoding[:40]} are not read here: this endpoint takes "
                "queries, not data (it inserts nothing)",
            )
        if request.content_type == "multipart/form-data":
            form = await _form(request)
            body = form.pop("query", "")
            fields.update(form)
        else:
            body, utf8 = _decoded(await _body(request))
    for name in ("compress", "decompress"):
        if fields.get(name, "0") not in ("", "0"):
            raise ClickHouseError.of(
                NOT_IMPLEMENTED,
                f"{name}=1 (ClickHouse's own compressed framing) is not supported here",
            )
    text = "\n".join(part for part in (fields.get("query", ""), body) if part)
    if len(text.encode()) > SQL_QUERY_BYTES_MAX:
        raise ClickHouseError.of(QUERY_IS_TOO_LARGE, f"the query is longer than {SQL_QUERY_BYTES_MAX} bytes")
    if not text.strip():
        raise ClickHouseError.of(SYNTAX_ERROR, "Empty query")
    if "\0" in text:
        raise ClickHouseError.of(BAD_ARGUMENTS, "the query contains a NUL character")
    return engine.SqlQuery(
        text=text,
        database=fields.get("database") or request.headers.get("X-ClickHouse-Database") or default_database,
        default_format=fields.get("default_format") or request.headers.get("X-ClickHouse-Format") or DEFAULT_FORMAT,
        parameters={
            name.removeprefix(PARAMETER_PREFIX): value
            for name, value in fields.items()
            if name.startswith(PARAMETER_PREFIX)
        },
        settings={
            name: value
            for name, value in fields.items()
            if name not in TRANSPORT_PARAMETERS and not name.startswith(PARAMETER_PREFIX)
        },
        utf8=utf8,
    )


async def _body(request: web.Request) -> bytes:
    raw = bytearray()
    try:
        while chunk := await request.content.read(64 * 1024):
            raw += chunk
            if len(raw) > SQL_QUERY_BYTES_MAX:
                raise ClickHouseError.of(QUERY_IS_TOO_LARGE, f"the query is longer than {SQL_QUERY_BYTES_MAX} bytes")
    except RequestPayloadError:  # e.g. a gzip body that does not inflate
        raise ClickHouseError.of(BAD_ARGUMENTS, "the body could not be decoded as its Content-Encoding says") from None
    return bytes(raw)


def _decoded(raw: bytes) -> tuple[str, bool]:
    """The text, and whether it was UTF-8: bytes that are not are replaced, so the
    statement can still be judged (an INSERT's binary data), but such a text never runs."""
    try:
        return raw.decode(), True
    except UnicodeDecodeError:
        return raw.decode(errors="replace"), False


async def _form(request: web.Request) -> dict[str, str]:
    """The text fields of a multipart body; files (ClickHouse's external data) are refused."""
    fields: dict[str, str] = {}
    size = 0
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ClickHouseError.of(BAD_ARGUMENTS, "nested multipart bodies are not supported")
            if part.filename is not None:
                raise ClickHouseError.of(NOT_IMPLEMENTED, "external data (file fields) is not supported here")
            value = bytearray()
            while chunk := await part.read_chunk(64 * 1024):
                value += chunk
                size += len(chunk)
                if size > SQL_FORM_BYTES_MAX:
                    raise ClickHouseError.of(QUERY_IS_TOO_LARGE, f"the form is larger than {SQL_FORM_BYTES_MAX} bytes")
            fields[part.name or ""] = _utf8_field(bytes(value))
    except (ValueError, RuntimeError) as error:  # aiohttp's words for a malformed multipart body
        raise ClickHouseError.of(BAD_ARGUMENTS, f"the multipart body could not be read: {error}") from None
    return fields


def _utf8_field(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as error:
        raise ClickHouseError.of(BAD_ARGUMENTS, f"a form field is not UTF-8 text (byte {error.start})") from None


def _credentials(request: web.Request) -> Credentials | None:
    """From Basic authentication, the X-ClickHouse-User/Key headers or user/password parameters."""
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Basic "):
        try:
            basic = BasicAuth.decode(authorization)
        except ValueError:
            raise ClickHouseError.of(AUTHENTICATION_FAILED, "the Authorization header is not valid Basic") from None
        return Credentials(basic.login, basic.password)
    user = request.headers.get("X-ClickHouse-User") or request.query.get("user")
    if user is None:
        return None
    password = request.headers.get("X-ClickHouse-Key") or request.query.get("password") or ""
    return Credentials(user, password)


def _content_type(output_format: str) -> str:
    if output_format.startswith(("TabSeparated", "TSV")):
        return "text/tab-separated-values; charset=UTF-8"
    if output_format.startswith("CSV"):
        return "text/csv; charset=UTF-8"
    if output_format.startswith("JSON"):
        return "application/json; charset=UTF-8"
    if output_format.startswith(BINARY_FORMATS):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"
