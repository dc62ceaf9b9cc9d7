"""One analyst's query on the embedded store, on chDB sessions of its own.

Each session is opened for the query and closed after it, so nothing a query does to a
session outlives it, and each gets the limits (sinks/sql/policy.py), then `readonly = 1`.
On the first, ClickHouse's parser judges the text, which reaches it as a query parameter,
never spliced into SQL: `normalizeQuery` (an INSERT is refused at once: its data is no
SQL), `formatQuerySingleLine` (exactly one statement: chDB runs every statement of a
multi-statement text, `EXPLAIN AST` of one too) and `EXPLAIN AST`, whose tree the policy
checks. Only then does the query run, in the requested format: on the same session, or,
when the client sent settings, on a second one that carries them too (ClickHouse refuses
any that would change something). The first keeps the service's own limits, so a
client's lower `max_result_rows` cannot cut the syntax tree short.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from typing import Any

from sinks.clickhouse import open_handle
from sinks.sql.errors import (
    BAD_ARGUMENTS,
    READONLY,
    TOO_MANY_ROWS_OR_BYTES,
    UNKNOWN_FORMAT,
    UNKNOWN_SETTING,
    ClickHouseError,
    from_engine,
)
from sinks.sql.policy import Limits, check_statement, parse_tree, query_settings

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
INSERT = re.compile(r"\s*INSERT\b", re.IGNORECASE)
# The FORMAT clause at the end of a query whose literals normalizeQuery replaced with `?`.
FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?:SETTINGS\b[^`\"]*)?;?\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SqlQuery:
    text: str
    database: str
    default_format: str
    parameters: dict[str, str]  # {name: value} for `{name:Type}` in the text
    settings: dict[str, str]  # the client's ClickHouse settings (transport parameters removed)
    utf8: bool = True  # False: the text had bytes that are not UTF-8 (replaced: judged, never run)


@dataclasses.dataclass(frozen=True, slots=True)
class SqlAnswer:
    body: bytes
    format: str
    summary: dict[str, str]  # ClickHouse's X-ClickHouse-Summary fields


def run(folder: str, query: SqlQuery, limits: Limits) -> SqlAnswer:
    """The query's output, or the ClickHouseError that refuses or failed it."""
    if not IDENTIFIER.fullmatch(query.default_format):
        raise ClickHouseError.of(UNKNOWN_FORMAT, f"Unknown format {query.default_format[:80]!r}")
    with _session(folder, limits, asked={}) as checking:
        output_format = _checked(checking, query)
        if not query.utf8:
            raise ClickHouseError.of(BAD_ARGUMENTS, "the query is not UTF-8 text")
        if query.settings:
            with _session(folder, limits, asked=query.settings) as asked:
                body, summary = _answer(asked, query)
        else:  # the checking session is the one the query would get
            body, summary = _answer(checking, query)
    if len(body) > limits.result_bytes:
        raise ClickHouseError.of(
            TOO_MANY_ROWS_OR_BYTES,
            f"Limit for result exceeded, max bytes: {limits.result_bytes}, the {output_format} output has "
            f"{len(body)} bytes",
        )
    return SqlAnswer(body, output_format, summary)


def _checked(handle: Any, query: SqlQuery) -> str:
    """Judge the text with ClickHouse's parser; returns the output format. The session has
    the service's own limits, so a client's lower max_result_rows cannot cut the syntax
    tree short, and judging changes nothing in it."""
    normalized = _text(_execute(handle, "SELECT normalizeQuery({sql:String})", "TabSeparatedRaw", _sql(query)))
    if INSERT.match(normalized):  # its data (FORMAT Native ...) is no SQL the checks below could parse
        raise ClickHouseError.of(READONLY, "Cannot execute query in readonly mode: this endpoint does not insert")
    _execute(handle, "SELECT formatQuerySingleLine({sql:String})", parameters=_sql(query))
    tree = _execute(handle, f"EXPLAIN AST {query.text}", "TabSeparatedRaw", query.parameters)
    check_statement(parse_tree(_text(tree)))
    clause = FORMAT_CLAUSE.search(normalized.strip())
    return clause.group(1) if clause else query.default_format


def _answer(handle: Any, query: SqlQuery) -> tuple[bytes, dict[str, str]]:
    _execute(handle, f"USE {_quoted_identifier(query.database)}")
    result = _execute(handle, query.text, query.default_format, query.parameters)
    return bytes(result.bytes() or b""), _summary(result)


@contextlib.contextmanager
def _session(folder: str, limits: Limits, *, asked: dict[str, str]) -> Iterator[Any]:
    """A handle under the limits (the lower of the service's and what the client asked),
    then readonly, then the client's other settings, which ClickHouse refuses if they change anything."""
    handle = open_handle(folder)
    try:
        before, after = query_settings(limits, asked)
        _execute(handle, "SET " + ", ".join(f"{name} = {value}" for name, value in before.items()))
        _execute(handle, "SET readonly = 1")
        for name in after:
            if not IDENTIFIER.fullmatch(name):
                raise ClickHouseError.of(UNKNOWN_SETTING, f"Unknown setting {name[:80]!r}")
        if after:
            _execute(handle, "SET " + ", ".join(f"{name} = {_string_literal(value)}" for name, value in after.items()))
        yield handle
    finally:
        handle.close()


def engine_identity(folder: str) -> tuple[str, str]:
    """(ClickHouse version, the engine's time zone) of the embedded store."""
    handle = open_handle(folder)
    try:
        version, timezone = _execute(handle, "SELECT version(), timezone()").bytes().decode().strip().split("\t")
        return version, timezone
    finally:
        handle.close()


def _sql(query: SqlQuery) -> dict[str, str]:
    """The query's text as the value of a `{sql:String}` parameter."""
    return {"sql": _escaped(query.text)}


def _text(result: Any) -> str:
    return bytes(result.bytes() or b"").decode(errors="replace")


def _execute(
    handle: Any, sql: str, output_format: str = "TabSeparated", parameters: dict[str, str] | None = None
) -> Any:
    try:
        return handle.query(sql, output_format, params=parameters or {})
    except ClickHouseError:
        raise
    except Exception as error:  # chDB raises its errors as RuntimeError with ClickHouse's text
        raise from_engine(error) from error


def _escaped(text: str) -> str:
    """A query parameter's value as ClickHouse reads it: in its escaped text format."""
    return text.translate(_ESCAPES)


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def _string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quoted_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _summary(result: Any) -> dict[str, str]:
    return {
        "read_rows": str(result.storage_rows_read()),
        "read_bytes": str(result.storage_bytes_read()),
        "written_rows": "0",
        "written_bytes": "0",
        "result_rows": str(result.rows_read()),
        "result_bytes": str(result.bytes_read()),
        "elapsed_ns": str(int(result.elapsed() * 1_000_000_000)),
    }
