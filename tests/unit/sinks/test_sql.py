"""The analysts' SQL on real chDB: what runs, what is refused and with which ClickHouse
code, the limits, and the store unchanged after every refusal. (The HTTP protocol, with
clickhouse-connect's own client, is tested in tests/integration/test_query_sql.py.)"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from bench.event_workload import generate
from codec import Codec
from foundation.settings import Settings
from sinks.clickhouse import embedded_folder
from sinks.sql import engine
from sinks.sql.errors import ClickHouseError, from_engine
from sinks.sql.policy import Limits, check_statement, may_run_sql, parse_tree, query_settings
from tests.unit.sinks.support import messages, sink

LIMITS = Limits(
    time_ms=2000, memory_bytes=64 * 1024 * 1024, result_rows=10_000, result_bytes=4 * 1024 * 1024, threads=2
)


@pytest.fixture
def loaded(clickhouse: Any, database: str) -> str:
    codec = Codec()
    sink(clickhouse, database, codec).write(messages(generate(3, accounts=5, events=60), codec))
    return database


def run(clickhouse_dsn: str, database: str, text: str, **fields: Any) -> engine.SqlAnswer:
    folder = embedded_folder(clickhouse_dsn)
    assert folder is not None
    query = engine.SqlQuery(
        text=text,
        database=database,
        default_format=fields.pop("default_format", "TabSeparated"),
        parameters=fields.pop("parameters", {}),
        settings=fields.pop("settings", {}),
    )
    return engine.run(folder, query, fields.pop("limits", LIMITS))


def refusal(clickhouse_dsn: str, database: str, text: str, **fields: Any) -> ClickHouseError:
    with pytest.raises(ClickHouseError) as raised:
        run(clickhouse_dsn, database, text, **fields)
    return raised.value


READS = [
    ("SELECT count() >= 60 FROM account_events", "1\n"),  # the generator stops at the event that reaches 60
    ("WITH n AS (SELECT count() AS c FROM account_latest) SELECT c FROM n", "5\n"),
    # ORDER BY binds to the last SELECT of a UNION ALL in ClickHouse: the branches' order is not
    # fixed (CI once read "2, 1"), so the ordering is put around the whole union.
    ("SELECT x FROM (SELECT 1 AS x UNION ALL SELECT 2) ORDER BY x", "1\n2\n"),
    ("SELECT 3 UNION ALL SELECT 3", "3\n3\n"),
    ("SELECT 1 EXCEPT SELECT 2", "1\n"),
    (
        "SHOW TABLES",
        "account_events\naccount_latest\naccount_tree\naudit\naudit_progress\nschema_migrations\nsink_progress\n",
    ),
    ("SELECT count() FROM audit WHERE outcome = 'DENIED'", "0\n"),  # the audit trail reads like any view
    ("SELECT sum(number) FROM numbers(10)", "45\n"),
    ("SELECT * FROM view(SELECT 7)", "7\n"),
    ("SELECT count() FROM system.tables WHERE database = currentDatabase()", "7\n"),
    ("SELECT 'INTO OUTFILE ''x'' FORMAT JSON'", "INTO OUTFILE \\'x\\' FORMAT JSON\n"),  # TSV escapes quotes
]


@pytest.mark.parametrize(("text", "expected"), READS)
def test_reads_run(clickhouse_dsn: str, loaded: str, text: str, expected: str) -> None:
    answer = run(clickhouse_dsn, loaded, text)
    assert answer.body.decode() == expected
    assert answer.format == "TabSeparated"


def test_describe_explain_parameters_and_formats(clickhouse_dsn: str, loaded: str) -> None:
    described = run(clickhouse_dsn, loaded, "DESCRIBE TABLE account_latest").body.decode().splitlines()
    assert described[0].split("\t")[:2] == ["account_id", "String"]
    assert "ReadFromMergeTree" in run(clickhouse_dsn, loaded, "EXPLAIN SELECT * FROM account_events").body.decode()
    answer = run(
        clickhouse_dsn, loaded, "SELECT {n:UInt8} + 1 AS x, {s:String} AS y", parameters={"n": "4", "s": "a\\tb"}
    )
    assert answer.body == b"5\ta\\tb\n"
    answer = run(clickhouse_dsn, loaded, "SELECT 1 AS x FORMAT JSONEachRow", default_format="CSV")
    assert (answer.format, answer.body) == ("JSONEachRow", b'{"x":1}\n')
    answer = run(clickhouse_dsn, loaded, "SELECT 1 AS x", default_format="CSVWithNames")
    assert (answer.format, answer.body) == ("CSVWithNames", b'"x"\n1\n')
    assert answer.summary["result_rows"] == "1"


# statement -> (ClickHouse code, name): every write, everything that reads outside the
# database, every way of changing a setting; each checked to leave the store as it was.
REFUSED = [
    ("INSERT INTO account_tree VALUES ('a', 'b')", 164, "READONLY"),
    ("INSERT INTO FUNCTION file('/tmp/streamwallet-sql-test.csv', CSV, 'a String') VALUES ('x')", 164, "READONLY"),
    ("CREATE TABLE t (a Int8) ENGINE = Memory", 164, "READONLY"),
    ("CREATE TEMPORARY TABLE t (a Int8)", 164, "READONLY"),
    ("DROP TABLE account_tree", 164, "READONLY"),
    ("TRUNCATE TABLE account_tree", 164, "READONLY"),
    ("ALTER TABLE account_events DELETE WHERE 1", 164, "READONLY"),
    ("DELETE FROM account_events WHERE 1", 164, "READONLY"),
    ("OPTIMIZE TABLE account_events FINAL", 164, "READONLY"),
    ("SYSTEM FLUSH LOGS", 164, "READONLY"),
    ("KILL QUERY WHERE 1", 164, "READONLY"),
    ("SET max_threads = 1", 164, "READONLY"),
    ("USE system", 164, "READONLY"),
    ("EXISTS TABLE account_events", 164, "READONLY"),
    ("SELECT 1 SETTINGS max_execution_time = 3600", 164, "READONLY"),
    ("SELECT 1 SETTINGS readonly = 0", 164, "READONLY"),
    ("SELECT * FROM file('/etc/hostname')", 497, "ACCESS_DENIED"),
    ("SELECT * FROM url('http://127.0.0.1:1/x', CSV, 'a String')", 497, "ACCESS_DENIED"),
    ("SELECT * FROM s3('http://127.0.0.1:1/bucket/x.csv', CSV, 'a String')", 497, "ACCESS_DENIED"),
    ("SELECT * FROM python(settings)", 497, "ACCESS_DENIED"),
    ("SELECT * FROM filesystem('/')", 497, "ACCESS_DENIED"),
    ("SELECT * FROM executable('ls', TSV, 'a String')", 497, "ACCESS_DENIED"),
    ("SELECT * FROM remote('127.0.0.1:1', system.one)", 497, "ACCESS_DENIED"),
    ("SELECT * FROM numbers(1) JOIN (SELECT * FROM sqlite('/tmp/x.db', 't')) AS s ON 1", 497, "ACCESS_DENIED"),
    ("EXPLAIN SELECT * FROM file('/etc/hostname')", 497, "ACCESS_DENIED"),
    ("DESCRIBE TABLE file('/etc/passwd')", 497, "ACCESS_DENIED"),
    ("SELECT file('/etc/hostname')", 446, "FUNCTION_NOT_ALLOWED"),
    ("SELECT arrayMap(x -> file(x), ['/etc/hostname'])", 446, "FUNCTION_NOT_ALLOWED"),
    ("SELECT 1 INTO OUTFILE '/tmp/streamwallet-sql-test.txt'", 358, "INTO_OUTFILE_NOT_ALLOWED"),
    ("SHOW TABLES INTO OUTFILE '/tmp/streamwallet-sql-test.txt'", 358, "INTO_OUTFILE_NOT_ALLOWED"),
    ("EXPLAIN SELECT 1 INTO OUTFILE '/tmp/streamwallet-sql-test.txt'", 358, "INTO_OUTFILE_NOT_ALLOWED"),
    ("SELECT 1 AS `x\ny` INTO OUTFILE '/tmp/streamwallet-sql-test.txt'", 36, "BAD_ARGUMENTS"),
    ("SELECT 1; DROP TABLE account_tree", 62, "SYNTAX_ERROR"),
    ("SELECT 1; SELECT 1 INTO OUTFILE '/tmp/streamwallet-sql-test.txt'", 62, "SYNTAX_ERROR"),
    ("garbage ((", 62, "SYNTAX_ERROR"),
    ("SELECT count() FROM system.numbers", 159, "TIMEOUT_EXCEEDED"),
    ("SELECT groupArray(number) FROM numbers(100000000)", 241, "MEMORY_LIMIT_EXCEEDED"),
    ("SELECT * FROM numbers(100000)", 396, "TOO_MANY_ROWS_OR_BYTES"),
    ("SELECT * FROM no_such_table", 60, "UNKNOWN_TABLE"),
]


@pytest.mark.parametrize(("text", "code", "name"), REFUSED)
def test_writes_outside_reads_and_expensive_queries_are_refused(
    clickhouse_dsn: str, loaded: str, text: str, code: int, name: str
) -> None:
    before = run(clickhouse_dsn, loaded, "SELECT count() FROM account_events FINAL").body
    tables = run(clickhouse_dsn, loaded, "SHOW TABLES").body
    error = refusal(clickhouse_dsn, loaded, text)
    assert (error.code, error.name) == (code, name), error
    assert error.message and "Code:" not in error.message
    assert run(clickhouse_dsn, loaded, "SELECT count() FROM account_events FINAL").body == before
    assert run(clickhouse_dsn, loaded, "SHOW TABLES").body == tables
    assert not os.path.exists("/tmp/streamwallet-sql-test.txt") and not os.path.exists("/tmp/streamwallet-sql-test.csv")


def test_an_answer_over_the_byte_bound_in_its_output_format_is_refused(clickhouse_dsn: str, loaded: str) -> None:
    small = dataclasses.replace(LIMITS, result_bytes=1000)
    error = refusal(clickhouse_dsn, loaded, "SELECT repeat('x', 100) FROM numbers(50)", limits=small)
    assert (error.code, error.name) == (396, "TOO_MANY_ROWS_OR_BYTES")


def test_a_client_may_lower_the_limits_but_not_raise_them_or_change_other_settings(
    clickhouse_dsn: str, loaded: str
) -> None:
    text = "SELECT getSetting('max_execution_time'), getSetting('max_threads'), getSetting('max_result_rows')"
    asked = {"max_execution_time": "3600", "max_threads": "64", "max_result_rows": "0"}
    assert run(clickhouse_dsn, loaded, text, settings=asked).body == b"2\t2\t10000\n"
    lower = {"max_execution_time": "0.5", "max_threads": "1", "max_result_rows": "10"}
    assert run(clickhouse_dsn, loaded, text, settings=lower).body == b"0.5\t1\t10\n"
    error = refusal(clickhouse_dsn, loaded, "SELECT * FROM numbers(20)", settings={"max_result_rows": "10"})
    assert error.name == "TOO_MANY_ROWS_OR_BYTES"
    assert refusal(clickhouse_dsn, loaded, "SELECT 1", settings={"readonly": "0"}).name == "READONLY"
    assert refusal(clickhouse_dsn, loaded, "SELECT 1", settings={"join_use_nulls": "1"}).name == "READONLY"
    assert refusal(clickhouse_dsn, loaded, "SELECT 1", settings={"no_such_setting": "1"}).name == "UNKNOWN_SETTING"
    assert refusal(clickhouse_dsn, loaded, "SELECT 1", settings={"x = 1; DROP": "1"}).name == "UNKNOWN_SETTING"
    assert refusal(clickhouse_dsn, loaded, "SELECT 1", settings={"max_threads": "lots"}).name == "BAD_ARGUMENTS"
    # A value equal to the one in force is no change: ClickHouse lets it pass.
    assert run(clickhouse_dsn, loaded, "SELECT 1", settings={"result_overflow_mode": "throw"}).body == b"1\n"


def test_unknown_formats_and_databases(clickhouse_dsn: str, loaded: str) -> None:
    assert refusal(clickhouse_dsn, loaded, "SELECT 1", default_format="Bogus").name == "UNKNOWN_FORMAT"
    assert refusal(clickhouse_dsn, loaded, "SELECT 1", default_format="JSON; DROP").name == "UNKNOWN_FORMAT"
    assert refusal(clickhouse_dsn, "no_such_database", "SELECT 1").name == "UNKNOWN_DATABASE"
    assert run(clickhouse_dsn, "system", "SELECT count() > 0 FROM one").body == b"1\n"


def test_query_settings_take_the_lower_limit() -> None:
    before, after = query_settings(LIMITS, {"max_execution_time": "1.5", "max_memory_usage": "0", "foo": "bar"})
    assert before["max_execution_time"] == "1.5" and before["max_memory_usage"] == str(64 * 1024 * 1024)
    assert before["result_overflow_mode"] == "'throw'" and after == {"foo": "bar"}
    limits = Limits.from_settings(Settings())
    assert limits.bounds()["max_execution_time"] == Settings().sql_query_time_ms_max / 1000


def test_a_line_break_in_an_identifier_cannot_hide_a_node() -> None:
    tree = parse_tree("SelectWithUnionQuery (children 2)\n ExpressionList\n  Identifier a (alias x\ny)\n Literal 'f'\n")
    with pytest.raises(ClickHouseError) as raised:
        check_statement(tree)
    assert raised.value.name == "BAD_ARGUMENTS"


def test_engine_errors_keep_their_code_name_and_innermost_message() -> None:
    nested = RuntimeError(
        "Code: 73. DB::Exception: Code: 73. DB::Exception: Unknown format Bogus. (UNKNOWN_FORMAT) "
        "(version 26.9.2.1). (UNKNOWN_FORMAT)"
    )
    error = from_engine(nested)
    assert (error.code, error.name, error.message) == (73, "UNKNOWN_FORMAT", "Unknown format Bogus.")
    assert (
        error.body("26.9.2.1") == "Code: 73. DB::Exception: Unknown format Bogus. (UNKNOWN_FORMAT) (version 26.9.2.1)\n"
    )
    assert error.http_status == 404
    assert from_engine(RuntimeError("no code here")).name == "UNKNOWN_EXCEPTION"


def test_only_loopback_clients_may_run_sql_until_authentication_lands() -> None:
    assert may_run_sql(peer="127.0.0.1", credentials=None) is None
    assert may_run_sql(peer="::1", credentials=None) is None
    for peer in ("10.0.0.7", "192.168.1.2", None, "not an address"):
        refused = may_run_sql(peer=peer, credentials=None)
        assert refused is not None and refused.name == "ACCESS_DENIED" and refused.http_status == 403


def test_the_store_folder_is_spelt_as_chdb_compares_it(tmp_path: Path) -> None:
    assert embedded_folder(f"chdb://{tmp_path}/./x") == os.path.realpath(tmp_path / "x")
    assert embedded_folder("http://127.0.0.1:8123") is None
