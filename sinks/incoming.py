"""A batch of AccountEvents decoded by ClickHouse itself, then written by SQL.

Decoding each event in Python and serializing it again into ClickHouse's Native format
took four fifths of the sink's CPU. Here the sink hands ClickHouse the events' own Avro
bodies instead: one Avro object container whose schema is the AccountEvent's current
schema plus three longs — a check drawn per batch, the record's Kafka partition and
offset — which the sink appends to each body (an Avro record's encoding is its fields'
encodings in order, so a body followed by three longs is a record of the extended
schema). ClickHouse reads it into `account_events_incoming`, a temporary table of the sink's own
session (emptied before each batch, and no other sink's: sinks of several query services
on one ClickHouse server never see each other's), and from there plain SQL fills
account_events, account_latest and account_tree.

Only bodies of the current writer schema take this path: a record framed with an older
schema version, or a registry id not ours, is decoded by the codec (which resolves it) and
inserted into the same table as a row.

ClickHouse's Avro reader and the codec's must agree on what is an event, or a rebuild
could write a different view from the same topic. So a container ClickHouse refuses, or
whose rows are not exactly the records the sink sent, or that holds a string the codec
would refuse, is not written: the sink empties the table and decodes those messages with
the codec, which dead-letters what it refuses (`EventSink.write`).

    bytes after a body           ClickHouse reads them as the check, or the record's
                                 position, or the next record: no row holds the wrong
                                 bytes with the right check (`Sent`)
    invalid UTF-8                ClickHouse stores bytes: `VALID_UTF8` over every string
    a negative sequence          it would wrap in the view's UInt64 (EventDecoder refuses it)
    a ten-byte varint past       ClickHouse drops the high bits: a body with such bytes
    64 bits                      (`overlong_varint`, found in strings too) goes to the codec
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

import dataclasses
import json
import secrets
from collections.abc import Mapping
from typing import Any

from codec.schemas import strip_logical_types
from codec.writer import write_long, write_string, zigzag_varint

# A temporary table: one per client session (each sink has its own), gone with it.
INCOMING_TABLE = "account_events_incoming"
TRUNCATE_INCOMING_SQL = f"TRUNCATE TABLE {INCOMING_TABLE}"
# The AccountEvent's fields under their Avro names, as Avro longs and strings; emptied before
# each batch, so nothing here outlives one batch.
CREATE_INCOMING_SQL = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {INCOMING_TABLE} (
    account_id String,
    sequence Int64,
    kind String,
    amount Int64,
    held_change Int64,
    currency String,
    balance Int64,
    held Int64,
    available Int64,
    pending_in Int64,
    pending_out Int64,
    lower_limit Int64,
    upper_limit Int64,
    status String,
    parent_account_id Nullable(String),
    metadata Map(String, String),
    command_id String,
    dedup_id String,
    correlation_id Nullable(String),
    counterparty_account_id Nullable(String),
    code Nullable(String),
    occurred_at_ms Int64,
    previous_hash String DEFAULT '',
    hash String DEFAULT '',
    owner String,
    `principal.principal_id` String,
    `principal.roles` Array(String) DEFAULT [],
    batch_check Int64 DEFAULT 0,
    kafka_partition Int64,
    kafka_offset Int64
)
ENGINE = Memory
"""
# A ten-byte varint past 64 bits: nine bytes with the continuation bit, then one above 1.
# Found by mapping each byte to its class (1: continuation, 2: a last byte above 1, 0: 0
# or 1) and searching the classes, two passes in C (a regular expression took 17% of the sink).
_VARINT_CLASSES = bytes(1 if byte >= 0x80 else 2 if byte >= 0x02 else 0 for byte in range(256))
_OVERLONG = b"\x01" * 9 + b"\x02"
PRIMITIVE_TYPES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
POSITION_FIELDS = ["kafka_partition", "kafka_offset"]
APPENDED_FIELDS = ["batch_check", *POSITION_FIELDS]  # appended to each body by the sink, in this order
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


def overlong_varint(data: bytes, start: int = 0) -> bool:
    """Whether `data` from `start` holds the bytes of a ten-byte varint past 64 bits."""
    return data.translate(_VARINT_CLASSES).find(_OVERLONG, start) >= 0


class Container:
    """Avro object containers of one writer schema, extended by the Kafka position."""

    def __init__(self, writer_schema: Mapping[str, Any]) -> None:
        schema = strip_logical_types(writer_schema)  # a copy
        unchecked = _types(schema) - CHECKED_TYPES
        if unchecked:
            raise RuntimeError(
                f"{schema['name']} has Avro types {sorted(unchecked)}: where ClickHouse's reader and the codec's "
                f"differ on them is not checked (sinks/incoming.py); check it before the sink hands them over"
            )
        schema["fields"] = [*schema["fields"], *({"name": name, "type": "long"} for name in APPENDED_FIELDS)]
        head = bytearray(b"Obj\x01")
        write_long(head, 2)  # a map block of two entries, then the empty block
        for text in ("avro.schema", json.dumps(schema), "avro.codec", "null"):
            write_string(head, text)
        write_long(head, 0)
        self.head = bytes(head + SYNC_MARKER)

    def of(self, parts: list[bytes], records: int) -> bytes:
        """The container of `records` records whose bytes are `parts`, joined."""
        data = b"".join(parts)
        return b"".join((self.head, zigzag_varint(records), zigzag_varint(len(data)), data, SYNC_MARKER))


class Sent:
    """What the sink appends to each body of a batch, and what it must read back.

    Before each record's position the sink writes `check`, a random number drawn per batch
    (below 2**62) that an event's bytes cannot know. ClickHouse reads the container from the
    start, so a row whose check is right was read exactly where the sink put it: its record
    ended where the body did, and the position after the check is the one sent; by
    induction every row is. Bytes after a body, a body cut short — ClickHouse reads the check
    from the wrong bytes — and the last record's trailing bytes, which ClickHouse would
    otherwise ignore, show as a wrong check. With as many rows as records sent, the rows are
    exactly the records sent."""

    def __init__(self, check: int | None = None) -> None:
        self.check = secrets.randbits(62) if check is None else check
        self.records = 0
        self._prefixes: dict[int, bytes] = {}  # partition -> the check and the partition, encoded

    def append(self, parts: list[bytes], partition: int, offset: int) -> None:
        """Append a record's check and position to the container's parts (after its body)."""
        prefix = self._prefixes.get(partition)
        if prefix is None:
            prefix = self._prefixes[partition] = zigzag_varint(self.check) + zigzag_varint(partition)
        parts.append(prefix)
        parts.append(zigzag_varint(offset))
        self.records += 1


def received_sql(check: int) -> str:
    """Per account: its newest sequence and that event's time (for read-your-writes); and on
    every row the batch's totals: the rows, those not read where the sink put them or holding
    a string the codec would refuse or a sequence the view cannot hold (as `Sent` and
    `VALID_UTF8` describe), and those with a parent. One query, where two cost a round trip
    more per batch (a lone event's batch is all round trips)."""
    totals = (
        f"SELECT tuple(count(), countIf(batch_check != {check} OR sequence < 0 OR NOT ({VALID_UTF8})), "
        f"countIf(parent_account_id IS NOT NULL)) FROM {INCOMING_TABLE}"
    )
    return (
        f"SELECT account_id, max(sequence), max(occurred_at_ms), ({totals}) FROM {INCOMING_TABLE} GROUP BY account_id"
    )


@dataclasses.dataclass(slots=True)
class Received:
    """What a batch put into the incoming table."""

    newest: dict[str, int] = dataclasses.field(default_factory=dict)  # account -> its newest sequence
    newest_ms: int | None = None  # the newest event's time
    parented: int = 0  # rows with a parent account (account_tree has nothing to learn without)

    def add(self, account_id: str, sequence: int, occurred_at_ms: int, parented: bool) -> None:
        """A row the codec decoded."""
        self.newest[account_id] = max(sequence, self.newest.get(account_id, sequence))
        self.newest_ms = occurred_at_ms if self.newest_ms is None else max(self.newest_ms, occurred_at_ms)
        self.parented += parented


def read_back(sent: Sent, rows: list[tuple[Any, ...]]) -> Received | str:
    """What ClickHouse read (`received_sql`'s rows), or why it is not the records sent, each
    as the codec reads it."""
    records, wrong, parented = (int(value) for value in rows[0][3]) if rows else (0, 0, 0)
    if records != sent.records:
        return f"ClickHouse read {records} records, the sink sent {sent.records}"
    if wrong:
        return (
            f"{wrong} records were not read where the sink put them (bytes after a body), or hold a string "
            f"that is not UTF-8 or a negative sequence"
        )
    received = Received(newest={account: int(sequence) for account, sequence, _, _ in rows}, parented=parented)
    received.newest_ms = max(int(occurred_at_ms) for _, _, occurred_at_ms, _ in rows)
    return received


# -- from the incoming table into the views --------------------------------------------------


def _occurred_at(expression: str) -> str:
    return f"fromUnixTimestamp64Milli({expression}, 'UTC')"


# Columns of the views whose source in the incoming table has another name or form.
_SOURCES = {
    "occurred_at": _occurred_at("occurred_at_ms"),
    "updated_at": _occurred_at("occurred_at_ms"),
    "principal_id": "`principal.principal_id`",
}


# Rows of one batch are unique per key already (an account's sequence, an account): sorting
# them for duplicates on insert is wasted (FINAL and merges collapse across batches). The
# events insert took 40 ms per 20,000 events with it, 26 ms without.
_INSERT_SETTINGS = " SETTINGS optimize_on_insert = 0"


def events_sql(database: str, columns: list[str]) -> str:
    """The incoming rows into account_events."""
    selected = ", ".join(_SOURCES.get(column, column) for column in columns)
    return (
        f"INSERT INTO {database}.account_events ({', '.join(columns)}) "
        f"SELECT {selected} FROM {INCOMING_TABLE}{_INSERT_SETTINGS}"
    )


def latest_sql(database: str, columns: list[str]) -> str:
    """Each account's newest incoming row into account_latest: the row itself (LIMIT 1 BY),
    NULLs included (95 ms per 20,000 events with an argMax per column, 21 ms so)."""
    selected = ", ".join(_SOURCES.get(column, column) for column in columns)
    return (
        f"INSERT INTO {database}.account_latest ({', '.join(columns)}) "
        f"SELECT {selected} FROM {INCOMING_TABLE} "
        f"ORDER BY account_id, sequence DESC LIMIT 1 BY account_id{_INSERT_SETTINGS}"
    )


def tree_sql(database: str) -> str:
    """Each account's parent, as its newest incoming row says, into account_tree. argMax of
    a one-element tuple keeps a NULL (a bare argMax would skip it and take an older row's)."""
    return (
        f"INSERT INTO {database}.account_tree (parent_account_id, account_id) "
        f"SELECT assumeNotNull(parent), account_id FROM ("
        f"SELECT account_id, argMax(tuple(parent_account_id), sequence).1 AS parent "
        f"FROM {INCOMING_TABLE} GROUP BY account_id) WHERE parent IS NOT NULL{_INSERT_SETTINGS}"
    )
