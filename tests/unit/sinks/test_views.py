"""Every view against values folded independently from the events (tests/unit/sinks/oracle.py),
and the sink's idempotency: redelivered batches, however they are cut, change no answer."""

from __future__ import annotations

import datetime
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bench.event_workload import generate
from codec import Codec
from ledger.events import AccountEvent
from sinks import views
from sinks.schema import migrate
from tests.unit.sinks import oracle
from tests.unit.sinks.support import PARTITIONS, messages, sink, write_in_batches

EVENTS = 6000
ACCOUNTS = 80


@pytest.fixture(scope="module")
def loaded(clickhouse: Any) -> Iterator[tuple[str, list[AccountEvent]]]:
    """One database with the workload written in uneven batches (module-wide: read-only tests)."""
    database = f"views_{uuid.uuid4().hex[:10]}"
    migrate(clickhouse, database)
    events = generate(7, accounts=ACCOUNTS, events=EVENTS)
    codec = Codec()
    write_in_batches(sink(clickhouse, database, codec), messages(events, codec), 777)
    yield database, events
    clickhouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")


def test_balance_and_available_balance(clickhouse: Any, loaded: tuple[str, list[AccountEvent]]) -> None:
    database, events = loaded
    for account_id, history in oracle.by_account(events).items():
        record = views.balance(clickhouse, database, account_id)
        assert record is not None
        record.pop("updated_at")
        assert record == oracle.state(history[-1])
        assert record["balance"] == oracle.running_balances(history)[-1]
    assert views.balance(clickhouse, database, "nobody") is None


@pytest.mark.parametrize("page_size", [1, 7, 100])
def test_history_pages_in_both_directions(
    clickhouse: Any, loaded: tuple[str, list[AccountEvent]], page_size: int
) -> None:
    database, events = loaded
    # Every account with 100-event pages; fewer with more, smaller pages (each page is a query).
    step = {1: 40, 7: 5}.get(page_size, 1)
    for account_id, history in list(oracle.by_account(events).items())[::step]:
        expected = list(zip([event.sequence for event in history], oracle.running_balances(history), strict=True))
        for order in ("desc", "asc"):
            seen: list[dict[str, Any]] = []
            cursor: int | None = None
            while True:
                keywords = {"before": cursor} if order == "desc" else {"after": cursor}
                if cursor is None:
                    keywords = {} if order == "desc" else {"after": 0}
                page = views.history(clickhouse, database, account_id, limit=page_size, **keywords)
                assert len(page.events) <= page_size
                seen += page.events
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            if order == "desc":
                seen.reverse()
            assert [(event["sequence"], event["balance"]) for event in seen] == expected, (account_id, order)
            assert [event["kind"] for event in seen] == [event.kind.value for event in history]
            assert [event["occurred_at_ms"] for event in seen] == [event.occurred_at_ms for event in history]


def test_balance_as_of_a_sequence_and_a_time(clickhouse: Any, loaded: tuple[str, list[AccountEvent]]) -> None:
    database, events = loaded
    rng = random.Random(3)
    for account_id, history in list(oracle.by_account(events).items())[::3]:
        for sequence in {1, len(history), rng.randint(1, len(history))}:
            record = views.balance_as_of(clickhouse, database, account_id, sequence=sequence)
            assert record is not None
            record.pop("updated_at")
            assert record == oracle.state(history[sequence - 1])
            assert record["balance"] == oracle.running_balances(history)[sequence - 1]
        first, last = history[0].occurred_at_ms, history[-1].occurred_at_ms
        for at_ms in {first - 1, first, rng.randint(first, last), last, last + 10**9}:
            expected = oracle.as_of_time(history, at_ms)
            record = views.balance_as_of(clickhouse, database, account_id, at_ms=at_ms)
            if expected is None:
                assert record is None
            else:
                assert record is not None
                record.pop("updated_at")
                assert record == oracle.state(expected)


def test_daily_turnover(clickhouse: Any, loaded: tuple[str, list[AccountEvent]]) -> None:
    database, events = loaded
    spans_days = False
    for account_id, history in oracle.by_account(events).items():
        expected = oracle.turnover(history)
        spans_days |= len(expected) > 2
        assert views.daily_turnover(clickhouse, database, account_id) == expected, account_id
    assert spans_days, "the workload must cover several days"
    account_id, history = next(iter(oracle.by_account(events).items()))
    days = oracle.turnover(history)
    middle = datetime.date.fromisoformat(days[len(days) // 2]["day"])
    assert views.daily_turnover(clickhouse, database, account_id, from_day=middle, to_day=middle) == [
        row for row in days if row["day"] == middle.isoformat()
    ]


def test_per_currency_totals_net_to_the_external_flows(clickhouse: Any, loaded: tuple[str, list[AccountEvent]]) -> None:
    database, events = loaded
    expected = oracle.totals(events, PARTITIONS)
    rows = {row.pop("currency"): row for row in views.totals(clickhouse, database)}
    assert rows == expected
    assert all(row["drift"] == 0 for row in rows.values())
    assert any(row["credits_in_flight"] for row in rows.values()), "the workload must leave credits in flight"
    assert any(row["pending_out"] for row in rows.values())


def test_totals_at_a_cut_see_only_the_events_below_it(clickhouse: Any, loaded: tuple[str, list[AccountEvent]]) -> None:
    database, events = loaded
    codec = Codec()
    cut = {partition: 40 for partition in range(PARTITIONS)}
    below = [
        event
        for event, message in zip(events, messages(events, codec), strict=True)
        if message.offset() < cut[message.partition()]
    ]
    rows = {row.pop("currency"): row for row in views.totals(clickhouse, database, cut=cut)}
    expected = oracle.totals(below, PARTITIONS)
    for row in (*rows.values(), *expected.values()):
        # A cut by count is no consistent cut (credits without their debits): only sums compare.
        for name in ("drift", "credits_in_flight", "batches_in_flight"):
            row.pop(name)
    assert rows == expected


def test_hierarchy_rollups(clickhouse: Any, loaded: tuple[str, list[AccountEvent]]) -> None:
    database, events = loaded
    newest = {account_id: history[-1] for account_id, history in oracle.by_account(events).items()}
    roots = ["acct-00000", "acct-00002", "acct-00005", f"acct-{ACCOUNTS - 1:05d}", f"acct-{ACCOUNTS - 2:05d}"]
    roots += [f"acct-{index:05d}" for index in range(6, ACCOUNTS, 9)]
    deepest = 0
    for root in roots:
        members, cycles = oracle.descendants(events, root)
        result = views.rollup(clickhouse, database, root)
        assert result is not None
        assert result["descendants"] == len(members) - 1, root
        expected: dict[str, dict[str, int]] = {}
        for member in members:
            event = newest[member]
            row = expected.setdefault(event.currency, {"accounts": 0, "balance": 0, "available": 0})
            row["accounts"] += 1
            row["balance"] += event.balance
            row["available"] += event.balance - event.held
        got = {
            row["currency"]: {name: row[name] for name in ("accounts", "balance", "available")}
            for row in result["by_currency"]
        }
        assert got == expected, root
        assert set(result["cycles_at"]) == cycles, root
        deepest = max(deepest, result["depth"])
    assert deepest >= 5, "the chain must be followed to its end"
    cycle = views.rollup(clickhouse, database, f"acct-{ACCOUNTS - 1:05d}")
    assert cycle is not None and cycle["cycles_at"] == [f"acct-{ACCOUNTS - 1:05d}"]
    assert views.rollup(clickhouse, database, "nobody") is None


def test_rollup_depth_is_bounded(clickhouse: Any, database: str) -> None:
    """A chain longer than HIERARCHY_DEPTH_MAX: the levels below the bound are reported, not summed."""
    codec = Codec()
    base = generate(1, accounts=1, events=1, prefix="deep")[0]
    length = views.HIERARCHY_DEPTH_MAX + 5
    chain = [
        AccountEvent(
            **{
                **{name: getattr(base, name) for name in base.__dataclass_fields__},
                "account_id": f"deep-{index:03d}",
                "parent_account_id": None if index == 0 else f"deep-{index - 1:03d}",
            }
        )
        for index in range(length)
    ]
    write_in_batches(sink(clickhouse, database, codec), messages(chain, codec), 10)
    result = views.rollup(clickhouse, database, "deep-000")
    assert result is not None
    assert result["depth"] == views.HIERARCHY_DEPTH_MAX
    assert result["descendants"] == views.HIERARCHY_DEPTH_MAX
    assert result["beyond_depth_max"] == [f"deep-{views.HIERARCHY_DEPTH_MAX + 1:03d}"]
