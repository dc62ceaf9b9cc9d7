"""The audit sink's ClickHouse-decoded batches (sinks/audit_incoming.py) against a real chDB
store: whatever the bytes, the trail holds exactly the rows the codec alone would write,
and skips exactly what the codec refuses."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec import Codec, DecodeError
from codec.writer import zigzag_varint
from foundation.settings import Settings
from ledger.audit import AuditEvent, AuditOutcome, AuditSource
from ledger.principals import Principal, Role
from sinks.audit import AuditSink
from sinks.audit_incoming import AUDIT_INCOMING_TABLE
from tests.unit.codec.test_reader import corrupt, corruptions
from tests.unit.sinks.support import FakeMessage

CODEC = Codec()
HEADER = CODEC.header(AuditEvent)
PARTITIONS = 4
# The audit table, in the order of the codec path's row (occurred_at as milliseconds).
STORED = (
    "principal_id, roles, action, account_id, command_id, outcome, code, message, source, "
    "toUnixTimestamp64Milli(occurred_at), kafka_partition, kafka_offset"
)
OPS = Principal(principal_id="ops", roles=frozenset({Role.OPERATOR}))
TEXTS = ["", "LockAccount", "POST /v1/accounts/{account_id}/lock", "é€𝄞", "acct-7", "no\nreason"]


def trail(seed: int, records: int) -> list[AuditEvent]:
    """Varied AuditEvents: every outcome and source, principals with zero to four roles,
    strings empty, long and past ASCII, times before and after 1970."""
    rng = random.Random(seed)
    return [
        AuditEvent(
            principal=Principal(
                principal_id=rng.choice(["ops", "alice", "", "ü" * 40]),
                roles=frozenset(rng.sample(list(Role), rng.randint(0, len(Role)))),
            ),
            action=rng.choice(TEXTS),
            account_id=f"acct-{rng.randint(0, 9)}",
            command_id=f"cmd-{index}",
            outcome=rng.choice(list(AuditOutcome)),
            code=rng.choice(["", "FORBIDDEN", "UNAUTHENTICATED"]),
            message=rng.choice(TEXTS) * rng.randint(0, 30),
            source=rng.choice(list(AuditSource)),
            occurred_at_ms=rng.choice([1_795_600_000_000 + index, 0, -86_400_000]),
        )
        for index in range(records)
    ]


def ascii_trail(seed: int, records: int) -> list[AuditEvent]:
    """As `trail`, in ASCII: nine or more bytes past 0x7f, as a long non-ASCII string has,
    look like an overlong varint's and send their body to the codec before ClickHouse sees it."""
    return [
        dataclasses.replace(event, principal=OPS, message="no", action="LockAccount") for event in trail(seed, records)
    ]


def as_messages(events: list[AuditEvent]) -> list[FakeMessage]:
    return [
        FakeMessage(index % PARTITIONS, index // PARTITIONS, CODEC.encode(event), None, "streamwallet.audit")
        for index, event in enumerate(events)
    ]


def stored(client: Any, database: str) -> list[list[Any]]:
    result = client.query(f"SELECT {STORED} FROM {database}.audit FINAL ORDER BY kafka_partition, kafka_offset")
    return [list(row) for row in result.result_rows]


def codec_rows(batch: list[FakeMessage]) -> tuple[list[list[Any]], int]:
    """What the codec alone makes of a batch: the rows in Kafka order, and how many it refuses."""
    rows, refused = [], 0
    for message in batch:
        try:
            record = CODEC.decode_record(message.value() or b"", expected=(AuditEvent,))
        except DecodeError:
            refused += 1
            continue
        principal = record["principal"]
        rows.append(
            [
                principal["principal_id"],
                principal["roles"],
                *(record[name] for name in ("action", "account_id", "command_id", "outcome", "code", "message")),
                record["source"],
                record["occurred_at_ms"],
                message.partition(),
                message.offset(),
            ]
        )
    return sorted(rows, key=lambda row: (row[-2], row[-1])), refused


def written_as_the_codec_would(client: Any, database: str, batch: list[FakeMessage]) -> AuditSink:
    client.command(f"TRUNCATE TABLE {database}.audit")
    sink = AuditSink(Settings(partitions=PARTITIONS), client, database=database, small_batch_records=0)
    expected, refused = codec_rows(batch)
    sink.write(batch)
    assert stored(client, database) == expected
    assert sink.skipped == refused
    assert sink.records_written == len(expected)
    return sink


def body_of(event: AuditEvent) -> bytes:
    return CODEC.encode(event)[len(HEADER) :]


def replaced(batch: list[FakeMessage], index: int, value: bytes) -> list[FakeMessage]:
    return [*batch[:index], dataclasses.replace(batch[index], _value=value), *batch[index + 1 :]]


def test_a_batch_clickhouse_decodes_is_the_trail_the_codec_would_write(clickhouse: Any, database: str) -> None:
    sink = written_as_the_codec_would(clickhouse, database, as_messages(trail(1, 300)))
    assert sink.codec_batches == 0 and sink.skipped == 0
    assert clickhouse.query(f"SELECT count() FROM {database}.audit").result_rows == [(300,)]


@settings(
    max_examples=30, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    seed=st.integers(0, 1000),
    damaged=st.lists(st.tuples(st.integers(0, 19), st.lists(corruptions(), min_size=1, max_size=3)), max_size=3),
)
def test_corrupted_records_are_written_or_skipped_as_the_codec_decides(
    clickhouse: Any, database: str, seed: int, damaged: list[tuple[int, list[tuple[str, int, int]]]]
) -> None:
    batch = as_messages(trail(seed, 20))
    for index, changes in damaged:
        value = batch[index].value() or b""
        for change in changes:
            value = corrupt(value, *change)
        batch = replaced(batch, index, value)
    written_as_the_codec_would(clickhouse, database, batch)


@pytest.mark.parametrize("index", [5, 11], ids=["in the middle", "last"])
def test_bytes_after_a_body_are_skipped_never_read_as_a_position_or_a_record(
    clickhouse: Any, database: str, index: int
) -> None:
    """The extra bytes are what the sink would append (a position) and one more record:
    without the check ClickHouse would read the last message as valid, and ignore what is
    left of the block (the codec refuses bytes after a record)."""
    events = ascii_trail(2, 12)
    batch = as_messages(events)
    message = batch[index]
    smuggled = zigzag_varint(message.partition()) + zigzag_varint(message.offset()) + body_of(events[0])
    value = HEADER + body_of(events[index]) + smuggled
    sink = written_as_the_codec_would(clickhouse, database, replaced(batch, index, value))
    assert sink.codec_batches == 1 and sink.skipped == 1


def test_a_string_that_is_not_utf8_is_skipped(clickhouse: Any, database: str) -> None:
    events = ascii_trail(3, 10)
    for field in ("action", "message", "command_id"):
        fields: dict[str, Any] = {field: "é" * 3}
        body = body_of(dataclasses.replace(events[2], **fields)).replace("é".encode(), b"\xff\xfe", 1)
        sink = written_as_the_codec_would(clickhouse, database, replaced(as_messages(events), 2, HEADER + body))
        assert sink.skipped == 1 and sink.codec_batches == 1, field


def test_a_long_past_64_bits_is_skipped_though_clickhouse_would_drop_its_high_bits(
    clickhouse: Any, database: str
) -> None:
    events = ascii_trail(4, 10)
    encoded = CODEC.encode(events[3])
    at = encoded.rindex(zigzag_varint(events[3].occurred_at_ms))  # the last field
    overlong = b"\x82" + b"\x80" * 8 + b"\x7f"  # ten bytes: 1, and bits past the 64th
    sink = written_as_the_codec_would(clickhouse, database, replaced(as_messages(events), 3, encoded[:at] + overlong))
    assert sink.skipped == 1
    assert sink.codec_batches == 0  # only that body went to the codec


def test_a_session_that_lost_the_incoming_table_gets_it_again(clickhouse: Any, database: str) -> None:
    batch = as_messages(trail(5, 200))
    sink = AuditSink(Settings(partitions=PARTITIONS), clickhouse, database=database, small_batch_records=0)
    sink.write(batch[:100])
    clickhouse.command(f"DROP TEMPORARY TABLE {AUDIT_INCOMING_TABLE}")  # a restarted server's session
    sink.write(batch[100:])
    assert sink.records_written == 200 and sink.codec_batches == 0
    assert len(stored(clickhouse, database)) == 200
