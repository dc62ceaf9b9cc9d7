"""A batch of AccountEvents decoded by ClickHouse itself, then written by SQL.

Decoding each event in Python and serializing it again into ClickHouse's Native format
took four fifths of the sink's CPU. Here the sink hands ClickHouse the events' own Avro
bodies instead: one Avro object container whose schema is the AccountEvent's current
schema plus two longs, the record's Kafka partition and offset, which the sink appends to
each body (an Avro record's encoding is its fields' encodings in order, so a body followed
by two longs is a record of the extended schema). ClickHouse reads it into the table
`account_events_incoming` (a Memory table, emptied before each batch), and from there
plain SQL fills account_events, account_latest and account_tree.

Only bodies of the current writer schema take this path: a record framed with an older
schema version, or a registry id not ours, is decoded by the codec (which resolves it) and
inserted into the same table as a row.

ClickHouse's Avro reader and the codec's must agree on what is an event, or a rebuild
could write a different view from the same topic. So a container ClickHouse refuses, or
whose rows are not exactly the records the sink sent, or that holds a string the codec
would refuse, is not written: the sink empties the table and decodes those messages with
the codec, which dead-letters what it refuses (`EventSink.write`).

    bytes after a body           ClickHouse reads them as the record's position, or as the
                                 next record: the positions it reads back are not those
                                 sent (`Sent`)
    invalid UTF-8                ClickHouse stores bytes: `VALID_UTF8` over every string
    a negative sequence          it would wrap in the view's UInt64 (EventDecoder refuses it)
    a ten-byte varint past       ClickHouse drops the high bits: a body with such bytes
    64 bits                      (`OVERLONG_VARINT`, found in strings too) goes to the codec
    an enum index, a union
    branch, a length out of range   ClickHouse refuses the container

One difference is left, and allowed: ClickHouse reads a nullable union's branch index
past the union's two (a corrupted index byte) as the value's branch, and so reads the
values a correct index would give, where the codec refuses the record. Such a record is
written when its batch goes to ClickHouse, dead-lettered when its batch goes to the codec.
Kafka checks each record batch's CRC before the sink sees it (`check.crcs`), and only the
ledger may write the events topic, so such bytes come from a writer's bug, not the wire.

tests/unit/sinks/test_incoming.py compares the two paths on corrupted events; a search
of 60,000 random corruptions (1-3 bytes overwritten, inserted or deleted, or the body cut
short) found no other difference.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

from codec.schemas import strip_logical_types

INCOMING_TABLE = "account_events_incoming"
# Nine bytes with the continuation bit, then one with more than the 64th bit of a long.
OVERLONG_VARINT = re.compile(rb"[\x80-\xff]{9}[\x02-\x7f]")
PRIMITIVE_TYPES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
POSITION_FIELDS = ["kafka_partition", "kafka_offset"]  # appended to each body by the sink
SYNC_MARKER = b"streamwallet.snk"  # an object container's 16-byte block separator

# The columns of the incoming table whose values are strings, as ClickHouse must check them.
_STRINGS = [
    "account_id",
    "currency",
    "kind",
    "status",
    "command_id",
    "dedup_id",
    "owner",
    "previous_hash",
    "hash",
    "`principal.principal_id`",
]
_NULLABLE_STRINGS = ["parent_account_id", "correlation_id", "counterparty_account_id", "code"]
_STRING_ARRAYS = ["mapKeys(metadata)", "mapValues(metadata)", "`principal.roles`"]
VALID_UTF8 = " AND ".join(
    [
        *(f"isValidUTF8({column})" for column in _STRINGS),
        *(f"isValidUTF8(ifNull({column}, ''))" for column in _NULLABLE_STRINGS),
        *(f"arrayAll(text -> isValidUTF8(text), {array})" for array in _STRING_ARRAYS),
    ]
)


# The Avro types whose refusals by the codec are checked above: an int past 32 bits, a
# boolean other than 0 or 1, bytes or fixed (no UTF-8) would need checks of their own.
CHECKED_TYPES = frozenset({"record", "enum", "array", "map", "null", "string", "long"})


def _types(schema: Any) -> set[str]:
    """Every Avro type a schema uses."""
    if isinstance(schema, str):
        return {schema} if schema in PRIMITIVE_TYPES else set()  # otherwise a named type, defined where first used
    if isinstance(schema, list):
        return set().union(*(_types(branch) for branch in schema))
    kind = schema["type"]
    found = {kind} if isinstance(kind, str) else _types(kind)
    for field in schema.get("fields", []):
        found |= _types(field["type"])
    for key in ("items", "values"):
        if key in schema:
            found |= _types(schema[key])
    return found


def long_bytes(value: int) -> bytes:
    """An Avro long: zig-zag, then a base-128 varint."""
    number = (value << 1) ^ (value >> 63)
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _string_bytes(text: str) -> bytes:
    data = text.encode()
    return long_bytes(len(data)) + data


class Container:
    """Avro object containers of one writer schema, extended by the Kafka position."""

    def __init__(self, writer_schema: Mapping[str, Any]) -> None:
        schema = strip_logical_types(json.loads(json.dumps(writer_schema)))
        unchecked = _types(schema) - CHECKED_TYPES
        if unchecked:
            raise RuntimeError(
                f"{schema['name']} has Avro types {sorted(unchecked)}: where ClickHouse's reader and the codec's "
                f"differ on them is not checked (sinks/incoming.py); check it before the sink hands them over"
            )
        schema["fields"] = [*schema["fields"], *({"name": name, "type": "long"} for name in POSITION_FIELDS)]
        metadata = long_bytes(2)  # a map block of two entries, then the empty block
        metadata += _string_bytes("avro.schema") + _string_bytes(json.dumps(schema))
        metadata += _string_bytes("avro.codec") + _string_bytes("null") + long_bytes(0)
        self.head = b"Obj\x01" + metadata + SYNC_MARKER
        self.schema = schema

    def of(self, parts: list[bytes], records: int) -> bytes:
        """The container of `records` records whose bytes are `parts`, joined."""
        data = b"".join(parts)
        return b"".join((self.head, long_bytes(records), long_bytes(len(data)), data, SYNC_MARKER))


class Sent:
    """The positions the sink appends to a batch's bodies, and what it must read back.

    Each position is written masked (plus a random number drawn per batch, below 2**62), so
    an event's bytes cannot hold one: a record boundary ClickHouse places anywhere but where
    the sink put it — bytes after a body, a body cut short — reads a position that was not
    sent, even for the last record, whose trailing bytes ClickHouse would otherwise ignore.
    ClickHouse's rows must then give, per partition, as many records and the same sum of
    offsets as were sent."""

    def __init__(self, mask: int | None = None) -> None:
        self.mask = secrets.randbits(62) if mask is None else mask
        self.partitions: dict[int, list[int]] = {}  # partition -> [records, sum of offsets]
        self._partition_bytes: dict[int, bytes] = {}

    def append(self, parts: list[bytes], partition: int, offset: int) -> None:
        """Append a record's masked position to the container's parts, and count it."""
        masked_partition = self._partition_bytes.get(partition)
        if masked_partition is None:
            masked_partition = self._partition_bytes[partition] = long_bytes(partition + self.mask)
        parts.append(masked_partition)
        parts.append(long_bytes(offset + self.mask))
        known = self.partitions.get(partition)
        if known is None:
            self.partitions[partition] = [1, offset]
        else:
            known[0] += 1
            known[1] += offset

    def masked(self, row: list[Any]) -> list[Any]:
        """A row the codec decoded, its position (the last fields but two) masked as the container's."""
        row[-4] += self.mask
        row[-3] += self.mask
        return row


def received_sql(table: str, mask: int) -> str:
    """Per partition: rows, the sum of their offsets, and the rows with a string the codec
    would refuse or a sequence the view cannot hold (as `Sent` and `VALID_UTF8` describe)."""
    return (
        f"SELECT kafka_partition - {mask}, count(), sum(kafka_offset - {mask}), "
        f"countIf(sequence < 0 OR NOT ({VALID_UTF8})) "
        f"FROM {table} GROUP BY kafka_partition"
    )


def mismatch(sent: Sent, received: list[tuple[Any, ...]]) -> str | None:
    """Why ClickHouse's rows are not the records sent, or None."""
    got = {int(partition): [int(count), int(total)] for partition, count, total, _ in received}
    invalid = sum(int(row[3]) for row in received)
    if invalid:
        return f"{invalid} records hold strings that are not UTF-8 or a negative sequence"
    if got != sent.partitions:
        return f"ClickHouse read {got} (partition: [records, sum of offsets]), the sink sent {sent.partitions}"
    return None


# -- from the incoming table into the views --------------------------------------------------


def _occurred_at(expression: str) -> str:
    return f"fromUnixTimestamp64Milli({expression}, 'UTC')"


# Columns of the views whose source in the incoming table has another name or form.
_SOURCES = {
    "occurred_at": _occurred_at("occurred_at_ms"),
    "updated_at": _occurred_at("occurred_at_ms"),
    "principal_id": "`principal.principal_id`",
}


def events_sql(database: str, columns: list[str], mask: int) -> str:
    """The incoming rows into account_events, their positions unmasked (`Sent`)."""
    sources = {**_SOURCES, "kafka_partition": f"kafka_partition - {mask}", "kafka_offset": f"kafka_offset - {mask}"}
    selected = ", ".join(sources.get(column, column) for column in columns)
    return (
        f"INSERT INTO {database}.account_events ({', '.join(columns)}) "
        f"SELECT {selected} FROM {database}.{INCOMING_TABLE}"
    )


def latest_sql(database: str, columns: list[str]) -> str:
    """Each account's newest incoming row into account_latest. argMax of a one-element tuple
    keeps a NULL (a bare argMax would skip it and take an older row's value)."""

    def newest(column: str) -> str:
        if column == "account_id":
            return column
        return f"argMax(tuple({_SOURCES.get(column, column)}), sequence).1"

    return (
        f"INSERT INTO {database}.account_latest ({', '.join(columns)}) "
        f"SELECT {', '.join(newest(column) for column in columns)} "
        f"FROM {database}.{INCOMING_TABLE} GROUP BY account_id"
    )


def tree_sql(database: str) -> str:
    """Each account's parent, as its newest incoming row says, into account_tree."""
    return (
        f"INSERT INTO {database}.account_tree (parent_account_id, account_id) "
        f"SELECT assumeNotNull(parent), account_id FROM ("
        f"SELECT account_id, argMax(tuple(parent_account_id), sequence).1 AS parent "
        f"FROM {database}.{INCOMING_TABLE} GROUP BY account_id) WHERE parent IS NOT NULL"
    )


def newest_sql(database: str) -> str:
    """Per account: its newest sequence and that event's time (for read-your-writes)."""
    return f"SELECT account_id, max(sequence), max(occurred_at_ms) FROM {database}.{INCOMING_TABLE} GROUP BY account_id"
