"""The account listing (`GET /accounts?limit=&cursor=&owner=`, issue 11): every account once,
in id order, a bounded page at a time behind an opaque cursor that survives accounts opened
between pages; a cursor the service did not make is 400 BAD_CURSOR; `owner` filters on the
balances view's owner column where it has one and is a clear 400 where it has none.

The view against an oracle folded from the events (chDB, the workload of bench/), the HTTP
answers from the query service's real routes (aiohttp's test server, no Kafka: the sink is fed
directly, as in test_read_your_writes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bench.event_workload import generate
from codec import Codec
from foundation.settings import Settings
from ledger.limits import ACCOUNT_ID_LENGTH_MAX
from sinks import routes, views
from sinks.account_cursor import CURSOR_LENGTH_MAX, BadCursorError, decode_cursor, encode_cursor
from sinks.schema import migrate
from sinks.service import QueryService
from tests.unit.sinks import oracle
from tests.unit.sinks.support import PARTITIONS, messages, sink, write_in_batches

EVENTS = 1500
ACCOUNTS = 40


@pytest.fixture(scope="module")
def loaded(clickhouse: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    database = f"listing_{uuid.uuid4().hex[:10]}"
    migrate(clickhouse, database)
    events = generate(11, accounts=ACCOUNTS, events=EVENTS)
    write_in_batches(sink(clickhouse, database, Codec()), messages(events, Codec()), 333)
    yield database, {account_id: oracle.state(history[-1]) for account_id, history in oracle.by_account(events).items()}
    clickhouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")


def every_page(clickhouse: Any, database: str, *, limit: int, owner: str | None = None) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = views.account_page(clickhouse, database, limit=limit, after=after, owner=owner)
        pages.append([account["account_id"] for account in page.accounts])
        if page.last_account_id is None:
            return pages
        after = page.last_account_id


@pytest.mark.parametrize("limit", [1, 7, ACCOUNTS, views.ACCOUNT_PAGE_ACCOUNTS_MAX])
def test_pages_hold_every_account_once_in_id_order(
    clickhouse: Any, loaded: tuple[str, dict[str, Any]], limit: int
) -> None:
    database, states = loaded
    pages = every_page(clickhouse, database, limit=limit)
    listed = [account_id for page in pages for account_id in page]
    assert listed == sorted(states, key=str.encode)
    assert all(1 <= len(page) <= limit for page in pages)
    assert len(pages) == max(1, -(-len(states) // limit))


def test_each_row_is_the_account_as_the_single_read_answers_it(
    clickhouse: Any, loaded: tuple[str, dict[str, Any]]
) -> None:
    database, states = loaded
    page = views.account_page(clickhouse, database, limit=views.ACCOUNT_PAGE_ACCOUNTS_MAX)
    for account in page.accounts:
        assert account == views.balance(clickhouse, database, account["account_id"])
        account = dict(account)
        account.pop("updated_at")
        assert account == states[account["account_id"]]


def test_an_account_opened_between_pages_is_never_listed_twice(clickhouse: Any, database: str) -> None:
    events = generate(5, accounts=12, events=200)
    write_in_batches(sink(clickhouse, database, Codec()), messages(events, Codec()), 50)
    first = views.account_page(clickhouse, database, limit=5)
    assert first.last_account_id is not None
    cursor = first.last_account_id
    later = generate(6, accounts=30, events=600)  # more accounts, some sorting before the cursor
    write_in_batches(sink(clickhouse, database, Codec()), messages(later, Codec()), 100)
    listed = [account["account_id"] for account in first.accounts]
    after: str | None = cursor
    while after is not None:
        page = views.account_page(clickhouse, database, limit=5, after=after)
        listed += [account["account_id"] for account in page.accounts]
        after = page.last_account_id
    every = sorted({event.account_id for event in events + later}, key=str.encode)
    assert len(listed) == len(set(listed))
    assert listed[5:] == [account_id for account_id in every if account_id.encode() > cursor.encode()]


def test_owner_filters_on_the_views_owner_column(clickhouse: Any, database: str) -> None:
    events = generate(8, accounts=20, events=300)
    write_in_batches(sink(clickhouse, database, Codec()), messages(events, Codec()), 100)
    assert views.has_owner_column(clickhouse, database)  # since the owners' migration (3)
    every = [a["account_id"] for a in views.account_page(clickhouse, database, limit=1000).accounts]
    alices = sorted(every[::3], key=str.encode)
    clickhouse.command(
        f"ALTER TABLE {database}.account_latest UPDATE owner = 'alice' WHERE account_id IN %(ids)s",
        parameters={"ids": alices},
        settings={"mutations_sync": 2},
    )
    assert views.has_owner_column(clickhouse, database)
    assert [a for page in every_page(clickhouse, database, limit=2, owner="alice") for a in page] == alices
    assert views.account_page(clickhouse, database, owner="bob").accounts == []


def test_bounds_are_refused() -> None:
    for limit in (0, views.ACCOUNT_PAGE_ACCOUNTS_MAX + 1):
        with pytest.raises(ValueError, match="limit"):
            views.account_page(None, "unused", limit=limit)


# -- the cursor ------------------------------------------------------------------------------------


@pytest.mark.parametrize("account_id", ["a", "alice", "x?y#z/../%41", "~" * ACCOUNT_ID_LENGTH_MAX])
def test_a_cursor_carries_its_account_id_and_stays_within_its_bound(account_id: str) -> None:
    cursor = encode_cursor(account_id)
    assert decode_cursor(cursor) == account_id
    assert len(cursor) <= CURSOR_LENGTH_MAX and cursor.isascii() and account_id not in cursor.removeprefix("a1.")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "alice",
        "a1.",
        "a1.!!!",
        "a1.YWxpY2U=",  # padded: not as it was made
        "a1.YW xpY2U",
        "a2." + encode_cursor("alice")[3:],
        encode_cursor("alice") + "A",
        "a1." + "QUFB" * 40,  # longer than any account id
        encode_cursor("has space"),
        encode_cursor("pipe|d"),
        "a1.w6k",  # not ASCII once decoded
    ],
)
def test_a_cursor_the_service_did_not_make_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursorError):
        decode_cursor(cursor)


# -- the HTTP route ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def query_service(clickhouse_dsn: str, database: str) -> AsyncIterator[TestClient[Any, Any]]:
    """The query service's routes over `database`, served on a local port (no sink runs)."""
    service = QueryService(Settings(partitions=PARTITIONS, clickhouse_dsn=clickhouse_dsn, clickhouse_database=database))
    service._loop = asyncio.get_running_loop()
    app = web.Application()
    app[routes.STATE_KEY] = service
    routes.add_routes(app.router)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_the_route_pages_with_an_opaque_cursor(clickhouse_dsn: str, loaded: tuple[str, dict[str, Any]]) -> None:
    database, states = loaded
    listed, cursor, pages = [], None, 0
    async with query_service(clickhouse_dsn, database) as client:
        while True:
            response = await client.get("/accounts", params={"limit": "9", **({"cursor": cursor} if cursor else {})})
            assert response.status == 200
            body = await response.json()
            assert body["status"] == "ok" and len(body["accounts"]) <= 9
            listed += [account["account_id"] for account in body["accounts"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
            assert isinstance(cursor, str) and not any(
                account_id in cursor.removeprefix("a1.") for account_id in states
            )
    assert listed == sorted(states, key=str.encode) and pages == -(-len(states) // 9)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"cursor": "not-a-cursor"}, "BAD_CURSOR"),
        ({"cursor": "a1.YWxpY2U="}, "BAD_CURSOR"),
        ({"limit": "0"}, "BAD_PARAMETER"),
        ({"limit": str(views.ACCOUNT_PAGE_ACCOUNTS_MAX + 1)}, "BAD_PARAMETER"),
        ({"owner": "has space"}, "BAD_PARAMETER"),
    ],
)
async def test_bad_input_is_400_with_a_stable_code(
    clickhouse_dsn: str, loaded: tuple[str, dict[str, Any]], query: dict[str, str], code: str
) -> None:
    async with query_service(clickhouse_dsn, loaded[0]) as client:
        response = await client.get("/accounts", params=query)
        assert response.status == 400
        body = await response.json()
    assert body["code"] == code and body["error"]
