"""ClickHouse decodes the events sink's batches (sinks/incoming.py): the view it writes must
be the one the codec's decoding would write, for every batch, corrupted ones included,
and what the codec refuses must be dead-lettered, never written."""

from __future__ import annotations

import dataclasses
import io
import re
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.event_workload import generate
from codec import Codec, DecodeError
from codec.schemas import RELEASED_DIR, SCHEMA_ROOT, load_folder
from codec.writer import zigzag_varint
from ledger.events import AccountEvent
from sinks.avro_batch import Container, overlong_varint
from sinks.clickhouse import connect
from sinks.events import EVENT_FIELDS, EventSink
from sinks.incoming import INCOMING_TABLE
from tests.unit.codec.test_reader import corrupt, corruptions
from tests.unit.sinks.support import FakeMessage, messages, sink

CODEC = Codec()
HEADER = CODEC.header(AccountEvent)
# account_events, in the order of an EventDecoder row (occurred_at as milliseconds).
STORED = ", ".join(
    [
        *EVENT_FIELDS[:-1],
        "toUnixTimestamp64Milli(occurred_at)",
        "kafka_partition",
        "kafka_offset",
        "owner",
        "principal_id",
    ]
)


def stored_rows(client: Any, database: str) -> list[list[Any]]:
    result = client.query(f"SELECT {STORED} FROM {database}.account_events ORDER BY kafka_partition, kafka_offset")
    return [list(row) for row in result.result_rows]


def codec_view(
    target: EventSink, batch: list[FakeMessage]
) -> tuple[list[list[Any]], int, dict[str, int], set[tuple[int, int]]]:
    """What the codec alone makes of a batch: the rows, the dead letters, each account's
    newest sequence; and the positions of what it refuses only for a union branch past the
    union's (which ClickHouse reads as the value's branch: see sinks/incoming.py)."""
    rows: list[list[Any]] = []
    letters = 0
    newest: dict[str, int] = {}
    lenient = set()
    for message in batch:
        try:
            row = target.decoder.row(message.value() or b"", message.partition(), message.offset())
        except DecodeError as error:
            letters += 1
            if "union branch" in error.reason:
                lenient.add((message.partition(), message.offset()))
            continue
        rows.append(row)
        newest[row[0]] = max(newest.get(row[0], row[1]), row[1])
    return sorted(rows, key=lambda row: (row[-4], row[-3])), letters, newest, lenient


def written_as_the_codec_would(client: Any, database: str, batch: list[FakeMessage]) -> EventSink:
    target = sink(client, database, CODEC, small_batch_events=0)  # every batch through ClickHouse's decoding
    expected_rows, expected_letters, expected_newest, lenient = codec_view(target, batch)
    written = target.write(batch)
    stored = stored_rows(client, database)
    read_leniently = [row for row in stored if (row[-4], row[-3]) in lenient]
    assert [row for row in stored if (row[-4], row[-3]) not in lenient] == expected_rows
    assert target.metrics.dead_letters == expected_letters - len(read_leniently)
    assert written.events == len(expected_rows) + len(read_leniently)
    if not read_leniently:
        assert written.newest == expected_newest
    return target


@settings(
    max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    seed=st.integers(0, 1000),
    damaged=st.lists(st.tuples(st.integers(0, 29), st.lists(corruptions(), min_size=1, max_size=3)), max_size=3),
)
def test_corrupted_events_are_written_or_dead_lettered_as_the_codec_decides(
    clickhouse: Any, database: str, seed: int, damaged: list[tuple[int, list[tuple[str, int, int]]]]
) -> None:
    clickhouse.command(f"TRUNCATE TABLE {database}.account_events")
    batch = messages(generate(seed, accounts=5, events=30)[:30], CODEC)
    for index, changes in damaged:
        value = batch[index].value() or b""
        for change in changes:
            value = corrupt(value, *change)
        batch[index] = dataclasses.replace(batch[index], _value=value)
    written_as_the_codec_would(clickhouse, database, batch)


def replaced(batch: list[FakeMessage], index: int, body: bytes) -> list[FakeMessage]:
    return [*batch[:index], dataclasses.replace(batch[index], _value=HEADER + body), *batch[index + 1 :]]


def body_of(event: AccountEvent) -> bytes:
    return CODEC.encode(event)[len(HEADER) :]


@pytest.mark.parametrize("index", [5, 11], ids=["in the middle", "last"])
def test_bytes_after_a_body_are_dead_lettered_never_read_as_a_position_or_a_record(
    clickhouse: Any, database: str, index: int
) -> None:
    """The extra bytes are what the sink would append (the message's own position) and one
    more event: without the check ClickHouse would read the last message as valid, and ignore
    what is left of the block (the codec refuses bytes after a record)."""
    events = generate(3, accounts=4, events=12)
    batch = messages(events, CODEC)
    message = batch[index]
    smuggled = zigzag_varint(message.partition()) + zigzag_varint(message.offset()) + body_of(events[0])
    target = written_as_the_codec_would(clickhouse, database, replaced(batch, index, body_of(events[index]) + smuggled))
    assert target.metrics.codec_batches == 1
    assert target.metrics.dead_letters == 1


def test_a_string_that_is_not_utf8_is_dead_lettered_even_where_the_view_does_not_keep_it(
    clickhouse: Any, database: str
) -> None:
    events = generate(4, accounts=4, events=10)
    batch = messages(events, CODEC)
    for field in ("account_id", "command_id", "hash"):
        fields: dict[str, Any] = {field: "é" * 3}
        bad = dataclasses.replace(events[2], **fields)
        body = body_of(bad).replace("é".encode(), b"\xff\xfe", 1)  # one code point's bytes, and not UTF-8
        clickhouse.command(f"TRUNCATE TABLE {database}.account_events")
        target = written_as_the_codec_would(clickhouse, database, replaced(batch, 2, body))
        assert target.metrics.dead_letters == 1, field


def test_events_of_an_older_schema_version_are_resolved_by_the_codec_beside_clickhouses(
    clickhouse: Any, database: str
) -> None:
    released = load_folder(SCHEMA_ROOT / RELEASED_DIR / "v1", "v1")["streamwallet.event.AccountEvent"]
    events = generate(5, accounts=4, events=10)
    batch = messages(events, CODEC)
    record = CODEC.to_record(events[7])
    old_names = {field["name"] for field in released.parsed_plain["fields"]}
    body = io.BytesIO()
    fastavro.schemaless_writer(
        body, released.parsed_plain, {name: value for name, value in record.items() if name in old_names}
    )
    batch[7] = dataclasses.replace(batch[7], _value=b"\xc3\x01" + released.fingerprint + body.getvalue())
    target = written_as_the_codec_would(clickhouse, database, batch)
    assert target.metrics.codec_batches == 0 and target.metrics.dead_letters == 0
    assert len(stored_rows(clickhouse, database)) == len(events)


def test_the_container_is_an_avro_object_container_of_the_extended_schema() -> None:
    """fastavro reads what the sink hands ClickHouse: each body followed by its position is a
    record of the AccountEvent schema with batch_check, kafka_partition and kafka_offset appended."""
    events = generate(6, accounts=3, events=5)
    container = Container(CODEC.schema(AccountEvent).expanded)
    parts = []
    for offset, event in enumerate(events):
        parts += [body_of(event), zigzag_varint(77), zigzag_varint(2), zigzag_varint(offset + 2**40)]
    records: list[Any] = list(fastavro.reader(io.BytesIO(container.of(parts, len(events)))))
    assert [
        (record["account_id"], record["batch_check"], record["kafka_partition"], record["kafka_offset"])
        for record in records
    ] == [(event.account_id, 77, 2, offset + 2**40) for offset, event in enumerate(events)]


def test_a_long_past_64_bits_is_dead_lettered_though_clickhouse_would_drop_its_high_bits(
    clickhouse: Any, database: str
) -> None:
    events = generate(7, accounts=4, events=10)
    batch = messages(events, CODEC)
    body = body_of(events[3])
    sequence_at = 1 + len(events[3].account_id)  # after the account id's length and bytes
    overlong = b"\x82" + b"\x80" * 8 + b"\x7f"  # ten bytes: 1, and bits past the 64th
    target = written_as_the_codec_would(
        clickhouse, database, replaced(batch, 3, body[:sequence_at] + overlong + body[sequence_at + 1 :])
    )
    assert target.metrics.dead_letters == 1
    assert target.metrics.codec_batches == 0  # only that body went to the codec


def test_events_with_long_non_ascii_text_are_decoded_by_clickhouse_not_the_codec(
    clickhouse: Any, database: str
) -> None:
    """Nine bytes past 0x7f, then one above 1, are what an overlong varint looks like, and
    what UTF-8 text beyond Latin is made of (three bytes per CJK character). Such bodies are
    read by the codec first and, if it accepts them, decoded by ClickHouse with the rest:
    the codec's path costs four fifths of the sink's CPU."""
    metadata = {"city": "北京市朝阳区", "note": "Zürich, Genève, Kraków, Αθήνα"}
    events = [dataclasses.replace(event, metadata=metadata) for event in generate(10, accounts=4, events=40)]
    batch = messages(events, CODEC)
    assert all(overlong_varint(message.value() or b"") for message in batch)
    target = written_as_the_codec_would(clickhouse, database, batch)
    assert target.metrics.codec_events == 0 and target.metrics.codec_batches == 0


def test_a_schema_with_types_whose_differences_are_not_checked_is_refused() -> None:
    schema = {"type": "record", "name": "X", "fields": [{"name": "a", "type": ["null", "int"]}]}
    with pytest.raises(RuntimeError, match=r"has Avro types \['int'\]"):
        Container(schema)


def test_a_negative_sequence_is_dead_lettered_not_wrapped_into_the_views_uint64(clickhouse: Any, database: str) -> None:
    events = generate(8, accounts=4, events=10)
    batch = messages(events, CODEC)
    body = body_of(events[4])
    sequence_at = 1 + len(events[4].account_id)
    target = written_as_the_codec_would(
        clickhouse, database, replaced(batch, 4, body[:sequence_at] + zigzag_varint(-1) + body[sequence_at + 1 :])
    )
    assert target.metrics.dead_letters == 1


@given(data=st.binary(max_size=64), start=st.integers(0, 8))
def test_overlong_varints_are_found_wherever_their_bytes_are(data: bytes, start: int) -> None:
    """The byte-class search finds what the plain pattern does: nine bytes with the
    continuation bit, then one above 1."""
    assert overlong_varint(data, start) == (re.search(rb"[\x80-\xff]{9}[\x02-\x7f]", data[start:]) is not None)


def test_an_overlong_varint_is_found_among_other_bytes() -> None:
    assert overlong_varint(b"abc" + b"\x80" * 9 + b"\x02" + b"xyz")
    assert not overlong_varint(b"abc" + b"\x80" * 9 + b"\x01" + b"xyz")  # the 64th bit, and no more
    assert not overlong_varint(b"\x80" * 8 + b"\x7f")


def test_each_sink_has_its_own_incoming_table(clickhouse_dsn: str, database: str) -> None:
    """Query services scaled out on one ClickHouse server each run a sink: none may empty or
    read another's batch in flight. The incoming table is a temporary table of each client's
    session (each sink's batch stays in it until its next batch begins)."""
    events = generate(9, accounts=6, events=200)
    batch = messages(events, CODEC)
    first, second = connect(clickhouse_dsn, session=True), connect(clickhouse_dsn, session=True)
    sink(first, database, CODEC, small_batch_events=0).write(batch[:120])
    sink(second, database, CODEC, small_batch_events=0).write(batch[120:])
    assert first.query(f"SELECT count() FROM {INCOMING_TABLE}").result_rows == [(120,)]
    assert second.query(f"SELECT count() FROM {INCOMING_TABLE}").result_rows == [(len(batch) - 120,)]
    assert len(stored_rows(first, database)) == len(batch)
