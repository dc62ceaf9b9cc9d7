"""What an analyst's SQL may do: who may run it, the limits every query runs under, and
which statements pass.

The engine enforces most of it. Every query runs on a chDB handle of its own whose
limits are set first and then `readonly = 1`: ClickHouse itself refuses every write,
DDL, `SET`, `SYSTEM`, a changed setting anywhere in the query (`SETTINGS` clauses
included) and the table functions that create storage (`file`, `url`, `executable`, ...).
What `readonly = 1` still lets through is refused here, from the tree ClickHouse's own
parser builds (`EXPLAIN AST`), never from our reading of the SQL text:

* statements other than SELECT (WITH ... SELECT, UNION, INTERSECT, EXCEPT), SHOW,
  DESCRIBE and EXPLAIN of those: `KILL QUERY` would stop the sink's inserts, `USE`
  would outlive the query, and nothing else is needed to read;
* table functions outside a short list of generators: `s3`, `gcs`, `azureBlobStorage`,
  `iceberg*`, `deltaLake*`, `python` and others pass `readonly = 1` and read files,
  the network or this process's memory;
* scalar functions that read files (`file`);
* `INTO OUTFILE` (chDB runs it client-side, so `readonly = 1` does not stop it writing).

Limits: the service's bounds (settings `sql_*_max`) are set on every query. A client may
ask for a lower `max_execution_time`, `max_memory_usage`, `max_result_rows`,
`max_result_bytes` or `max_threads` (Grafana's driver always sends `max_execution_time`):
the lower of the two applies, and 0 ("unlimited") means the service's bound. Every
other setting a client sends is applied after `readonly = 1`, so ClickHouse refuses it
(`READONLY`) unless it equals the value already in force, exactly as a ClickHouse
server treats a `readonly = 1` user.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from foundation.settings import Settings
from sinks.sql.errors import (
    ACCESS_DENIED,
    BAD_ARGUMENTS,
    FUNCTION_NOT_ALLOWED,
    INTO_OUTFILE_NOT_ALLOWED,
    READONLY,
    ClickHouseError,
)

# Root nodes of EXPLAIN AST that may run (EXPLAIN's inner statement is checked the same way).
STATEMENTS_ALLOWED = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "ShowTables",  # SHOW TABLES, SHOW DATABASES, SHOW DICTIONARIES
        "ShowColumns",
        "ShowIndexes",
        "ShowCreateTableQuery",
        "ShowCreateDatabaseQuery",
        "ShowCreateViewQuery",
        "DescribeQuery",
        "Explain",
    }
)
# Table functions that only generate rows or read this store's own tables.
TABLE_FUNCTIONS_ALLOWED = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values", "view", "merge"}
)
SCALAR_FUNCTIONS_REFUSED = frozenset({"file"})


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str


def may_run_sql(*, peer: str | None, credentials: Credentials | None) -> ClickHouseError | None:
    """The one decision whether a request may run SQL: None, or the refusal to answer.

    Until authentication lands (issue 14's security part) only clients on this machine may:
    the query service binds `query_host`, loopback by default, but a deployment that opens
    the JSON API to other hosts (the Helm chart binds 0.0.0.0) must not open SQL with it.
    Credentials are read and passed here already; nothing checks them yet."""
    try:
        loopback = peer is not None and ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return ClickHouseError.of(
        ACCESS_DENIED,
        f"SQL is answered only to clients on the query service's own machine until authentication is in place "
        f"(this request came from {peer}); connect through the loopback interface (e.g. an SSH tunnel or "
        f"kubectl port-forward)",
    )


# -- limits ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Per query: the ClickHouse setting, its bound, and whether it takes fractions."""

    time_ms: int
    memory_bytes: int
    result_rows: int
    result_bytes: int
    threads: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            time_ms=settings.sql_query_time_ms_max,
            memory_bytes=settings.sql_memory_bytes_max,
            result_rows=settings.sql_result_rows_max,
            result_bytes=settings.sql_result_bytes_max,
            threads=settings.sql_threads_max,
        )

    def bounds(self) -> dict[str, float]:
        """ClickHouse setting -> the service's bound (max_execution_time in seconds)."""
        return {
            "max_execution_time": self.time_ms / 1000,
            "max_memory_usage": self.memory_bytes,
            "max_result_rows": self.result_rows,
            "max_result_bytes": self.result_bytes,
            "max_threads": self.threads,
        }


# Set with the limits, before readonly: a query over a bound fails instead of being cut short.
OVERFLOW_MODES = {"result_overflow_mode": "'throw'", "timeout_overflow_mode": "'throw'"}


def query_settings(limits: Limits, asked: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the settings to set before readonly, as SQL literals: each limit at the lower of the service's bound
    and what the client asked, and the overflow modes; the client's other settings, which
    ClickHouse then judges under readonly)."""
    before = {}
    for name, bound in limits.bounds().items():
        value = bound
        if name in asked:
            value = _lower(name, asked[name], bound)
        before[name] = f"{value:g}" if name == "max_execution_time" else str(int(value))
    before.update(OVERFLOW_MODES)
    after = {name: value for name, value in asked.items() if name not in before}
    return before, after


def _lower(name: str, text: str, bound: float) -> float:
    if name == "max_threads" and text.strip().lower().startswith("auto"):
        return bound
    try:
        value = float(text)
    except ValueError:
        raise ClickHouseError.of(BAD_ARGUMENTS, f"the value of {name} must be a number, not {text[:40]!r}") from None
    if not value >= 0:  # also refuses NaN
        raise ClickHouseError.of(BAD_ARGUMENTS, f"the value of {name} must not be negative, got {text[:40]!r}")
    return bound if value == 0 else min(value, bound)


# -- statements --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    depth: int
    kind: str  # the first word: SelectWithUnionQuery, Function, Literal, TableExpression, ...
    name: str  # the second word, if any: a function's name


def parse_tree(explain_ast: str) -> list[Node]:
    """EXPLAIN AST's lines as nodes, in pre-order (a node's line, then its children's),
    the depth being the indentation. An identifier may hold a line break, so a line may
    be a fragment of the previous one: the checks below never depend on such fragments
    being told apart, they only ever refuse more because of them."""
    nodes = []
    for line in explain_ast.splitlines():
        stripped = line.lstrip(" ")
        words = stripped.split()
        if not words:
            continue
        nodes.append(Node(len(line) - len(stripped), words[0], words[1] if len(words) > 1 else ""))
    return nodes


def check_statement(nodes: list[Node]) -> None:
    """Refuse, with ClickHouse's code for it, what `readonly = 1` lets through."""
    if not nodes or nodes[0].depth != 0 or any(node.depth == 0 for node in nodes[1:]):
        # A second line at depth 0 is the fragment of an identifier with a line break: it
        # would end the scan of the root's children early, so such a statement is not run.
        raise ClickHouseError.of(
            BAD_ARGUMENTS, "the statement's syntax tree could not be read (an identifier with a line break?)"
        )
    _check_root(nodes, 0)
    for index, node in enumerate(nodes):
        previous = nodes[index - 1] if index else None
        if node.kind != "Function":
            continue
        function = node.name.lower()
        # A table function is the first child of its TableExpression, whose line carries no user text.
        if previous is not None and previous.kind == "TableExpression" and previous.depth == node.depth - 1:
            if function not in TABLE_FUNCTIONS_ALLOWED:
                raise ClickHouseError.of(
                    ACCESS_DENIED,
                    f"the table function {node.name}() reads outside this database; only "
                    f"{', '.join(sorted(TABLE_FUNCTIONS_ALLOWED))} may be used here",
                )
        elif function in SCALAR_FUNCTIONS_REFUSED:
            raise ClickHouseError.of(
                FUNCTION_NOT_ALLOWED, f"the function {node.name}() reads files; it is refused here"
            )


def _check_root(nodes: list[Node], index: int) -> None:
    """The statement at `index` (EXPLAIN's inner statement too) is one that reads, and
    has no INTO OUTFILE: the only Literal that is a direct child of these statements."""
    root = nodes[index]
    if root.kind not in STATEMENTS_ALLOWED:
        raise ClickHouseError.of(
            READONLY,
            f"Cannot execute query in readonly mode: only SELECT, SHOW, DESCRIBE and EXPLAIN run here, not {root.kind}",
        )
    children = _children(nodes, index)
    if any(nodes[child].kind == "Literal" for child in children):
        raise ClickHouseError.of(INTO_OUTFILE_NOT_ALLOWED, "INTO OUTFILE is not allowed")
    if root.kind == "Explain":
        inner = [child for child in children if nodes[child].kind != "Set"]
        if not inner:
            raise ClickHouseError.of(READONLY, "EXPLAIN without a statement is not run")
        _check_root(nodes, inner[0])


def _children(nodes: list[Node], index: int) -> list[int]:
    depth = nodes[index].depth
    children = []
    for position in range(index + 1, len(nodes)):
        if nodes[position].depth <= depth:
            break
        if nodes[position].depth == depth + 1:
            children.append(position)
    return children
