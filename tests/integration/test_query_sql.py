"""SQL for analysts, end to end: clickhouse-connect's ordinary server client (from this
process) against a real query service (its own process) fed by events produced to the
events topic; the README's analyst queries checked against the events; writes, reads
outside the database, expensive queries and garbage refused with ClickHouse's errors;
and a second query service reading the first one's store through the endpoint.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from bench.event_workload import generate
from foundation.settings import Settings
from ledger.events import AccountEvent
from sinks.clickhouse import connect
from sinks.sql.endpoint import SQL_QUERIES_RUNNING_MAX, SQL_QUERIES_WAITING_MAX
from streamwallet.stack import ManagedProcess, Stack
from tests.conftest import free_port, fresh_settings
from tests.integration.test_query_side import get, produce_transactionally, wait_caught_up
from tests.unit.sinks import oracle

pytestmark = pytest.mark.kafka

README = Path(__file__).parents[2] / "README.md"
SQL_TIME_MS = 2000
ROWS_MAX = 50_000
PROCESS_EXIT_TIMEOUT_S = 120


@dataclasses.dataclass
class Deployment:
    settings: Settings
    stack: Stack
    events: list[AccountEvent]
    run_dir: Path

    def client(self, **options: Any) -> Any:
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.settings.query_port, **options)


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    run_dir = tmp_path_factory.mktemp("query-sql")
    settings = fresh_settings(
        kafka_bootstrap,
        run_dir,
        prefix="sql",
        read_wait_ms_max=1500,
        sql_query_time_ms_max=SQL_TIME_MS,
        sql_memory_bytes_max=64 * 1024 * 1024,
        sql_result_rows_max=ROWS_MAX,
    )
    events = generate(20261128, accounts=30, events=3000, partitions=settings.partitions)
    produce_transactionally(settings, events, abort=[], garbage=False)
    stack = Stack(settings, run_dir)
    try:
        stack.query().start().wait_ready()
        wait_caught_up(settings)
        for account_id, history in oracle.by_account(events).items():  # the views hold every event
            status, body = get(f"{settings.query_url}/accounts/{account_id}?min_seq={history[-1].sequence}")
            assert status == 200, body
        yield Deployment(settings, stack, events, run_dir)
    finally:
        stack.stop_all()


def http(url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(
        url, data=body, headers=headers or {}, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def refused(client: Any, sql: str) -> DatabaseError:
    with pytest.raises(DatabaseError) as raised:
        client.query(sql)
    return raised.value


# -- an analyst's session -------------------------------------------------------------------------


def test_clickhouse_connect_lists_and_describes_the_views(deployment: Deployment) -> None:
    client = deployment.client()
    assert client.server_version.count(".") >= 2
    assert [name for (name,) in client.query("SHOW TABLES").result_rows] == [
        "account_events",
        "account_latest",
        "account_tree",
        "audit",
        "audit_progress",
        "schema_migrations",
        "sink_progress",
    ]
    columns = dict((name, kind) for name, kind, *_ in client.query("DESCRIBE TABLE account_latest").result_rows)
    assert columns["balance"] == "Int64" and columns["currency"] == "LowCardinality(String)"
    assert client.command("SELECT count() FROM account_events FINAL") == len(deployment.events)
    frame = client.query_df("SELECT account_id, balance FROM account_latest FINAL ORDER BY account_id")
    expected = {account_id: history[-1].balance for account_id, history in oracle.by_account(deployment.events).items()}
    assert dict(zip(frame["account_id"], frame["balance"], strict=True)) == expected
    count = client.query(
        "SELECT count() FROM account_events FINAL WHERE account_id = {a:String}", parameters={"a": "x"}
    )
    assert count.result_rows == [(0,)]


def readme_sql() -> list[str]:
    section = README.read_text().split("### SQL for analysts", 1)[1]
    return re.findall(r"```sql\n(.*?)```", section, re.DOTALL)


def test_the_readme_queries_answer_what_the_events_say(deployment: Deployment) -> None:
    latest, turnover, movers = readme_sql()
    client = deployment.client()
    histories = oracle.by_account(deployment.events)

    rows = client.query(latest).result_rows
    expected = [
        (account_id, event.sequence, event.amount, history[-1].balance)
        for account_id in sorted(histories)
        for history in [histories[account_id]]
        for event in list(reversed(history))[:3]
    ]
    assert [(row[0], row[4], row[6], row[2]) for row in rows] == expected

    days: dict[tuple[datetime.date, str], list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for event in deployment.events:
        sums = days[(_day(event), event.currency)]
        sums[0] += max(event.amount, 0)
        sums[1] += max(-event.amount, 0)
        sums[2] += event.amount != 0
    got = {
        (day, currency): [credits, debits, movements]
        for day, currency, credits, debits, _, movements in client.query(turnover).result_rows
    }
    assert got == {key: value for key, value in days.items()}

    busiest = collections.Counter(_day(event) for event in deployment.events).most_common(1)[0][0]
    rows = client.query(movers.replace("today()", f"toDate('{busiest.isoformat()}')")).result_rows
    changes = []
    for account_id, history in histories.items():
        that_day = [event for event in history if _day(event) == busiest]
        if that_day:
            change = that_day[-1].balance - (that_day[0].balance - that_day[0].amount)
            changes.append((-abs(change), account_id, change, len(that_day)))
    assert [(row[0], row[4], row[5]) for row in rows] == [(a, c, n) for _, a, c, n in sorted(changes)[:10]]


def _day(event: AccountEvent) -> datetime.date:
    return datetime.datetime.fromtimestamp(event.occurred_at_ms / 1000, tz=datetime.UTC).date()


def test_curl_style_requests_get_clickhouse_answers_and_headers(deployment: Deployment) -> None:
    url = deployment.settings.query_url
    status, headers, body = http(f"{url}/?query=SELECT%20count()%20FROM%20account_latest%20FINAL&query_id=q-1")
    assert (status, body) == (200, b"30\n")
    assert headers["X-ClickHouse-Query-Id"] == "q-1" and headers["X-ClickHouse-Format"] == "TabSeparated"
    assert headers["X-ClickHouse-Timezone"] and headers["X-ClickHouse-Server-Display-Name"]
    summary = json.loads(headers["X-ClickHouse-Summary"])
    assert summary["result_rows"] == "1" and int(summary["read_rows"]) >= 30
    status, headers, body = http(
        f"{url}/?default_format=JSONEachRow",
        body=b"SELECT currency, sum(balance) AS b FROM account_latest FINAL GROUP BY currency ORDER BY currency",
    )
    assert status == 200 and headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert [json.loads(line)["currency"] for line in body.splitlines()] == sorted(
        {e.currency for e in deployment.events}
    )
    status, _, body = http(f"{url}/", body=b"SELECT 1 AS one FORMAT PrettyCompact")
    assert status == 200 and b"one" in body
    assert http(f"{url}/ping")[2] == b"Ok.\n" and http(f"{url}/")[2] == b"Ok.\n"


# -- what is refused, and how ----------------------------------------------------------------------


WRITES = [
    "INSERT INTO account_tree VALUES ('a', 'b')",
    "CREATE TABLE evil (a Int8) ENGINE = Memory",
    "DROP TABLE account_events",
    "ALTER TABLE account_events DELETE WHERE 1",
    "TRUNCATE TABLE account_latest",
    "SYSTEM STOP MERGES",
    "SET max_threads = 1",
    "KILL QUERY WHERE 1",
]


def test_a_write_is_refused_with_clickhouse_connects_database_error(deployment: Deployment) -> None:
    client = deployment.client()
    for sql in WRITES:
        with pytest.raises(DatabaseError) as raised:
            client.command(sql)
        assert raised.value.code == 164, (sql, raised.value)
        assert "READONLY" in str(raised.value)
    with pytest.raises(DatabaseError) as raised:
        deployment.client(compress=False).insert(
            "account_tree", [["a", "b"]], column_names=["parent_account_id", "account_id"]
        )
    assert raised.value.code == 164
    with pytest.raises(DatabaseError) as raised:  # clickhouse-connect compresses inserts with lz4
        client.insert("account_tree", [["a", "b"]], column_names=["parent_account_id", "account_id"])
    assert raised.value.code == 48
    assert client.command("SELECT count() FROM account_events FINAL") == len(deployment.events)
    assert client.command("SELECT count() FROM account_tree FINAL WHERE parent_account_id = 'a'") == 0
    assert len(client.query("SHOW TABLES").result_rows) == 7


def test_reads_outside_the_database_are_refused(deployment: Deployment, tmp_path: Path) -> None:
    client = deployment.client()
    target = tmp_path / "out.txt"
    cases = [
        ("SELECT * FROM file('/etc/hostname')", 497),
        ("SELECT * FROM url('http://127.0.0.1:1/x', CSV, 'a String')", 497),
        ("SELECT * FROM s3('http://127.0.0.1:1/bucket/x.csv', CSV, 'a String')", 497),
        ("SELECT * FROM python(settings)", 497),
        ("SELECT file('/etc/hostname')", 446),
        (f"SELECT 1 INTO OUTFILE '{target}'", 358),
        (f"SELECT 1; SELECT 1 INTO OUTFILE '{target}'", 62),
    ]
    for sql, code in cases:
        assert refused(client, sql).code == code, sql
    assert not target.exists()


def test_queries_over_their_limits_are_refused_cleanly(deployment: Deployment) -> None:
    client = deployment.client()
    timeout = refused(client, "SELECT count() FROM system.numbers")
    assert timeout.code == 159 and "Timeout exceeded" in str(timeout)
    assert refused(client, "SELECT groupArray(number) FROM numbers(100000000)").code == 241
    assert refused(client, f"SELECT * FROM numbers({ROWS_MAX * 4})").code == 396
    # The client may lower a limit; asking for more gets the service's bound (sent past
    # clickhouse-connect, which knows the setting is readonly and would not send it).
    url = deployment.settings.query_url
    status, _, body = http(
        f"{url}/?max_execution_time=3600&max_result_rows=10",
        body=b"SELECT getSetting('max_execution_time'), getSetting('max_result_rows')",
    )
    assert (status, body) == (200, f"{SQL_TIME_MS // 1000}\t10\n".encode())
    status, headers, _ = http(f"{url}/?readonly=0", body=b"SELECT 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "164")
    assert client.command("SELECT 1") == 1  # the service is fine


def test_too_many_queries_at_once_are_refused_not_queued_without_bound(deployment: Deployment) -> None:
    url = deployment.settings.query_url
    requests = 2 * (SQL_QUERIES_RUNNING_MAX + SQL_QUERIES_WAITING_MAX)  # the first ones take 1.5 s
    with concurrent.futures.ThreadPoolExecutor(requests) as pool:
        answers = list(pool.map(lambda _: http(f"{url}/", body=b"SELECT sleep(1.5)"), range(requests)))
    codes = collections.Counter(headers.get("X-ClickHouse-Exception-Code", "ok") for _, headers, _ in answers)
    assert set(codes) <= {"ok", "202"} and codes["202"] >= 1 and codes["ok"] >= 2, codes
    assert http(f"{url}/?query=SELECT+1")[2] == b"1\n"


GARBAGE: list[tuple[str, bytes | None, dict[str, str], int, str]] = [
    ("/", os.urandom(4000), {}, 400, "36"),
    ("/", b"\xff\xfe not text", {}, 400, "62"),  # judged with the bytes replaced: no SQL
    ("/", b"SELECT 'caf\xe9'", {}, 400, "36"),  # SQL, but never run with its bytes replaced
    ("/", b"SELECT " + b"1 + " * 70_000 + b"1", {}, 413, "229"),
    ("/", b"", {}, 400, "62"),
    ("/", b"SELECT 1 ((", {}, 400, "62"),
    ("/?default_format=NoSuchFormat", b"SELECT 1", {}, 404, "73"),
    ("/", b"SELECT 1 FORMAT NoSuchFormat", {}, 404, "73"),
    ("/?database=nowhere", b"SELECT 1", {}, 404, "81"),
    ("/?no_such_setting=1", b"SELECT 1", {}, 404, "115"),
    ("/?compress=1", b"SELECT 1", {}, 501, "48"),
    ("/", b"SELECT 1", {"Content-Encoding": "gzip"}, 400, "36"),
    ("/", b"SELECT 1", {"Authorization": "Basic %%%"}, 403, "516"),
    ("/", b"not a form", {"Content-Type": "multipart/form-data; boundary=x"}, 400, "36"),
    ("/?query_id=a%0d%0aX-Injected:%201", b"SELECT 1", {}, 400, "36"),
]


@pytest.mark.parametrize("case", GARBAGE)
def test_garbage_gets_a_clickhouse_error_with_a_code(
    deployment: Deployment, case: tuple[str, bytes | None, dict[str, str], int, str]
) -> None:
    path, body, headers, status, code = case
    got_status, got_headers, got_body = http(f"{deployment.settings.query_url}{path}", body=body, headers=headers)
    assert (got_status, got_headers.get("X-ClickHouse-Exception-Code")) == (status, code), got_body[:300]
    assert got_body.startswith(f"Code: {code}. DB::Exception: ".encode())
    assert "X-Injected" not in got_headers
    assert http(f"{deployment.settings.query_url}/?query=SELECT+1")[2] == b"1\n"


def test_a_url_too_long_for_the_http_server_is_refused_and_the_service_stays_up(deployment: Deployment) -> None:
    status, _, _ = http(f"{deployment.settings.query_url}/?query=SELECT+{'1+%2B+' * 4000}1")
    assert 400 <= status < 500
    assert http(f"{deployment.settings.query_url}/health")[0] == 200


# -- the server path of the sink's client: a read-only replica -------------------------------------


def second_service(deployment: Deployment, name: str, **overrides: Any) -> ManagedProcess:
    port = free_port()
    settings = dataclasses.replace(
        deployment.settings,
        clickhouse_dsn=f"http://127.0.0.1:{deployment.settings.query_port}",
        query_port=port,
        query_url=f"http://127.0.0.1:{port}",
        **overrides,
    )
    process = ManagedProcess(
        name=name,
        role="query",
        settings=settings,
        log_path=deployment.run_dir / "logs" / f"{name}.log",
        ready_url=f"{settings.query_url}/ready",
    )
    deployment.stack.processes.append(process)
    return process


def test_a_second_query_service_serves_reads_through_the_first_ones_endpoint(deployment: Deployment) -> None:
    replica = second_service(deployment, "query-replica", query_read_only=True).start()
    replica.wait_ready()
    first, second = deployment.settings.query_url, replica.settings.query_url
    histories = oracle.by_account(deployment.events)
    for account_id, history in list(histories.items())[:8]:
        for path in (
            f"/accounts/{account_id}?min_seq={history[-1].sequence}",
            f"/accounts/{account_id}/history?limit=20",
            f"/accounts/{account_id}/turnover",
            f"/accounts/{account_id}/rollup",
        ):
            status, body = get(f"{second}{path}")
            assert status == 200 and (status, body) == get(f"{first}{path}"), path
    assert get(f"{second}/totals?cut=none") == get(f"{first}/totals?cut=none")
    status, body = get(f"{second}/accounts/{account_id}?min_seq={history[-1].sequence + 5}")
    assert status == 409 and body["status"] == "not_yet"
    assert get(f"{second}/metrics.json")[1]["read_only"] is True
    assert get(f"{second}/reconcile")[0] == 409
    request = urllib.request.Request(f"{second}/admin/rebuild", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 409

    # The replica's own client (sinks/clickhouse.py, the server path) reads, and cannot write.
    store = connect(replica.settings.clickhouse_dsn)
    assert store.command(f"SELECT count() FROM {deployment.settings.clickhouse_database}.account_events FINAL") == len(
        deployment.events
    )
    with pytest.raises(DatabaseError) as written:
        store.command(f"INSERT INTO {deployment.settings.clickhouse_database}.account_tree VALUES ('a', 'b')")
    assert written.value.code == 164
    # It has no SQL endpoint of its own to offer: its store is a server.
    status, headers, _ = http(f"{second}/?query=SELECT+1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (501, "48")


def test_a_query_service_that_would_write_stops_at_start_saying_why(deployment: Deployment) -> None:
    writer = second_service(deployment, "query-writer").start()
    assert writer.process is not None
    assert writer.process.wait(PROCESS_EXIT_TIMEOUT_S) == 2
    assert "refuses writes" in writer.tail() and "STREAMWALLET_QUERY_READ_ONLY=1" in writer.tail()
