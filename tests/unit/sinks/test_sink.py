"""The sink's writes: idempotent under redelivery, progress stored after the data, dead
letters for undecodable events, and the fast decoder equal to the codec."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from bench.event_workload import generate
from codec import Codec, DecodeError
from ledger.events import AccountEvent
from sinks import views
from sinks.events import EVENT_COLUMNS, EventDecoder, event_row
from sinks.incoming import INCOMING_TABLE
from sinks.schema import migrate
from tests.unit.sinks import oracle
from tests.unit.sinks.support import FakeMessage, messages, sink, write_in_batches


def snapshot(client: Any, database: str, accounts: list[str]) -> dict[str, Any]:
    """Every answer the views give, for comparing before and after."""
    return {
        "totals": views.totals(client, database),
        "summaries": views.account_summaries(client, database),
        "balances": {account: views.balance(client, database, account) for account in accounts},
        "history": {account: views.history(client, database, account, limit=1000).events for account in accounts},
        "rollup": views.rollup(client, database, accounts[0]),
        "events": views.event_count(client, database),
        "latest_mismatches": views.latest_table_mismatches(client, database),
        "breaks": views.running_balance_breaks(client, database),
    }


def test_redelivered_batches_change_no_answer(clickhouse: Any, database: str) -> None:
    codec = Codec()
    events = generate(11, accounts=30, events=2500)
    batch = messages(events, codec)
    target = sink(clickhouse, database, codec)
    write_in_batches(target, batch, 300)
    accounts = sorted({event.account_id for event in events})
    before = snapshot(clickhouse, database, accounts)
    assert before["events"] == len(events)
    assert not before["breaks"] and not before["latest_mismatches"]
    # A crash between insert and progress redelivers from the stored offsets; batches may be
    # cut differently the second time, and overlap what was written.
    write_in_batches(target, batch[1000:1900], 77)
    write_in_batches(target, batch[:500], 500)
    write_in_batches(target, batch, 1234)
    # The duplicates sit in the table until a background merge collapses them; no answer shows them.
    assert snapshot(clickhouse, database, accounts) == before


def test_small_batches_and_large_ones_write_the_same_views(clickhouse: Any, database: str) -> None:
    """A few events go through the codec straight into the views, many through ClickHouse's
    decoding and SQL (sinks/incoming.py): the two must write the same answers."""
    codec = Codec()
    events = generate(17, accounts=40, events=3000)
    batch = messages(events, codec)
    accounts = sorted({event.account_id for event in events})
    small = f"{database}_small"
    migrate(clickhouse, small)
    try:
        write_in_batches(sink(clickhouse, database, codec, small_batch_events=0), batch, 500)
        write_in_batches(sink(clickhouse, small, codec, small_batch_events=10**9), batch, 500)
        large_answers = snapshot(clickhouse, database, accounts)
        assert large_answers["events"] == len(events) and not large_answers["latest_mismatches"]
        assert snapshot(clickhouse, small, accounts) == large_answers
    finally:
        clickhouse.command(f"DROP DATABASE IF EXISTS {small} SYNC")


def test_a_session_that_lost_the_incoming_table_gets_it_again(clickhouse: Any, database: str) -> None:
    """The incoming table is created once per sink, not before every batch; a session that
    no longer has it (a restarted server, an expired session) is given it again, and the
    batch is written whole."""
    codec = Codec()
    events = generate(23, accounts=20, events=600)
    batch = messages(events, codec)
    target = sink(clickhouse, database, codec, small_batch_events=0)
    target.write(batch[:300])
    clickhouse.command(f"DROP TEMPORARY TABLE {INCOMING_TABLE}")
    target.write(batch[300:])
    assert views.event_count(clickhouse, database) == len(events)
    assert not views.latest_table_mismatches(clickhouse, database)


def test_an_edge_the_sink_wrote_is_skipped_only_while_the_parent_is_the_same(clickhouse: Any, database: str) -> None:
    """The sink does not write a child's edge again for every event naming the same parent;
    a parent that changes (the ledger never does it; the view must not depend on that) is
    written, as it was before the sink remembered edges: every parent an event named."""
    codec = Codec()
    child = next(event for event in generate(3, accounts=20, events=400) if event.parent_account_id is not None)
    parents = ["parent-a", "parent-a", "parent-b", "parent-a", None, "parent-b"]
    events = [
        dataclasses.replace(child, sequence=sequence, parent_account_id=parent)
        for sequence, parent in enumerate(parents, start=1)
    ]
    tree_inserts: list[int] = []

    class Counting:  # the store, counting the inserts into account_tree
        def __getattr__(self, name: str) -> Any:
            return getattr(clickhouse, name)

        def insert(self, table: str, rows: list[Any], **options: Any) -> Any:
            if table.endswith(".account_tree"):
                tree_inserts.append(len(rows))
            return clickhouse.insert(table, rows, **options)

    write_in_batches(sink(Counting(), database, codec, small_batch_events=10**9), messages(events, codec), 1)
    assert tree_inserts == [1, 1, 1, 1], "a, b, a again, b again: not the second a, nor the None"
    tree = clickhouse.query(f"SELECT parent_account_id, account_id FROM {database}.account_tree FINAL ORDER BY ALL")
    assert tree.result_rows == [("parent-a", child.account_id), ("parent-b", child.account_id)]


def ends_of(batch: list[FakeMessage]) -> dict[int, int]:
    """Each partition's offset past its last message in `batch`."""
    return {message.partition(): message.offset() + 1 for message in batch}


def test_progress_is_stored_after_its_data_at_most_an_interval_late_and_never_moves_back(
    clickhouse: Any, database: str
) -> None:
    codec = Codec()
    events = generate(5, accounts=10, events=400)
    batch = messages(events, codec)
    target = sink(clickhouse, database, codec)
    target.progress.interval_s = 0.5
    write_in_batches(target, batch[:200], 100)
    assert views.progress(clickhouse, database) == {}, "stored within the interval: one insert per interval"
    time.sleep(0.5)
    write_in_batches(target, batch[200:300], 100)  # the interval has passed: this batch stores all written
    assert views.progress(clickhouse, database) == ends_of(batch[:300])
    write_in_batches(target, batch[300:], 100)
    assert views.progress(clickhouse, database) == ends_of(batch[:300]), "never ahead of the data"
    target.store_progress()  # as when the sink is idle or stops
    ends = ends_of(batch)
    assert views.progress(clickhouse, database) == ends
    write_in_batches(target, batch[:50], 50)  # a redelivery of old offsets
    target.store_progress()
    assert views.progress(clickhouse, database) == ends
    assert target.metrics.positions == ends
    assert target.metrics.events_written == len(events) + 50


def test_undecodable_events_are_dead_lettered_and_passed(clickhouse: Any, database: str) -> None:
    codec = Codec()
    events = generate(5, accounts=3, events=20)
    good = messages(events, codec)
    bad = FakeMessage(0, 1000, b"\xc3\x01not avro at all")
    target = sink(clickhouse, database, codec)
    written = target.write([*good, bad])
    target.store_progress()
    assert written.events == len(events)
    assert target.metrics.dead_letters == 1
    assert views.progress(clickhouse, database)[0] == 1001
    assert written.newest == {
        account_id: history[-1].sequence for account_id, history in oracle.by_account(events).items()
    }


def test_the_fast_decoder_equals_the_codec() -> None:
    codec = Codec()
    decoder = EventDecoder(codec)
    events = generate(13, accounts=20, events=3000)
    kinds = set()
    for offset, event in enumerate(events):
        kinds.add(event.kind)
        row = decoder.row(codec.encode(event), 3, offset)
        assert row == event_row(event, 3, offset)
        assert len(row) == len(EVENT_COLUMNS)
    assert len(kinds) >= 10
    with_everything = dataclasses.replace(events[-1], metadata={"a": "b"}, correlation_id="x", parent_account_id="p")
    assert decoder.row(codec.encode(with_everything), 0, 0) == event_row(with_everything, 0, 0)


@pytest.mark.parametrize(
    "data",
    [b"", b"junk", b"\xc3\x01" + b"\x00" * 8 + b"\x02", None],
    ids=["empty", "no marker", "unknown fingerprint", "trailing bytes"],
)
def test_the_fast_decoder_refuses_what_the_codec_refuses(data: bytes | None) -> None:
    codec = Codec()
    if data is None:
        event: AccountEvent = generate(1, accounts=1, events=1)[0]
        data = codec.encode(event) + b"\x00"
    with pytest.raises(DecodeError):
        EventDecoder(codec).row(data, 0, 0)
    truncated = codec.encode(generate(1, accounts=1, events=1)[0])[:-3]
    with pytest.raises(DecodeError):
        EventDecoder(codec).row(truncated, 0, 0)
