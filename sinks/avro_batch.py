"""Kafka records of one Avro type, handed to ClickHouse to decode: the sinks' fast path.

Decoding each record in Python and serializing it again into ClickHouse's Native format
took four fifths of the events sink's CPU. Here a sink hands ClickHouse the records' own
Avro bodies instead: one Avro object container whose schema is the record's current
schema plus three longs — a check drawn per batch, the record's Kafka partition and
offset — which the sink appends to each body (an Avro record's encoding is its fields'
encodings in order, so a body followed by three longs is a record of the extended
schema). ClickHouse reads it into a temporary table of the sink's own session (a
`SessionTable`, emptied before each batch, and no other sink's), and SQL writes the
sink's tables from there. The events sink (sinks/incoming.py) and the audit sink
(sinks/audit_incoming.py) take this path.

Only bodies of the current writer schema take it: a record framed with an older schema
version, or a registry id not ours, is decoded by the codec (which resolves it).

ClickHouse's Avro reader and the codec's must agree on what is a record, or a rebuild
could write a different view from the same topic. So a container ClickHouse refuses, or
whose rows are not exactly the records the sink sent, or that holds a string the codec
would refuse, is not written: the sink empties the table and decodes those messages with
the codec, which refuses what it cannot read (the events sink dead-letters it, the audit
sink skips it).

    bytes after a body           ClickHouse reads them as the check, or the record's
                                 position, or the next record: no row holds the wrong
                                 bytes with the right check (`Sent`)
    invalid UTF-8                ClickHouse stores bytes: each sink checks every string
                                 (`valid_utf8`)
    a ten-byte varint past       ClickHouse drops the high bits: a body with such bytes
    64 bits                      (`overlong_varint`, found in strings too) goes to the codec
                                 unless the codec reads it (`split`)
    an enum index, a union
    branch, a length out of range   ClickHouse refuses the container

One difference is left, and allowed: ClickHouse reads a nullable union's branch index
past the union's two (a corrupted index byte) as the value's branch, and so reads the
values a correct index would give, where the codec refuses the record. Such a record is
written when its batch goes to ClickHouse, refused when its batch goes to the codec.
Kafka checks each record batch's CRC before the sink sees it (`check.crcs`), and only the
ledger may write these topics, so such bytes come from a writer's bug, not the wire.

tests/unit/sinks/test_incoming.py and test_audit_incoming.py compare the two paths on
corrupted records; a search of 60,000 random corruptions of events (1-3 bytes
overwritten, inserted or deleted, or the body cut short) found no other difference.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from clickhouse_connect.driver.exceptions import DatabaseError
from confluent_kafka import KafkaError, KafkaException

from codec import Codec, DecodeError
from codec.schemas import strip_logical_types
from codec.writer import write_long, write_string, zigzag_varint

log = logging.getLogger(__name__)

# ClickHouse reads the container's fields by name; those it has no column for it skips.
INCOMING_SETTINGS = {"input_format_skip_unknown_fields": 1, "input_format_avro_allow_missing_fields": 0}
UNKNOWN_TABLE = "(UNKNOWN_TABLE)"  # ClickHouse's error 60, as its messages name it
ERROR_TEXT_MAX = 500  # of ClickHouse's refusal, in the log (it may quote the bytes it read)

# A ten-byte varint past 64 bits: nine bytes with the continuation bit, then one above 1.
# Found by mapping each byte to its class (1: continuation, 2: a last byte above 1, 0: 0
# or 1) and searching the classes, two passes in C (a regular expression took 17% of the sink).
_VARINT_CLASSES = bytes(1 if byte >= 0x80 else 2 if byte >= 0x02 else 0 for byte in range(256))
_OVERLONG = b"\x01" * 9 + b"\x02"
PRIMITIVE_TYPES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
POSITION_FIELDS = ["kafka_partition", "kafka_offset"]
APPENDED_FIELDS = ["batch_check", *POSITION_FIELDS]  # appended to each body by the sink, in this order
SYNC_MARKER = b"streamwallet.snk"  # an object container's 16-byte block separator

# The Avro types whose refusals by the codec are checked (the table above): an int past 32 bits, a
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
                f"differ on them is not checked (sinks/avro_batch.py); check it before the sink hands them over"
            )
        schema["fields"] = [*schema["fields"], *({"name": name, "type": "long"} for name in APPENDED_FIELDS)]
        head = bytearray(b"Obj\x01")
        write_long(head, 2)  # a map block of two entries, then the empty block
        for text in ("avro.schema", json.dumps(schema), "avro.codec", "null"):
            write_string(head, text)
        write_long(head, 0)
        self.head = bytes(head + SYNC_MARKER)

    def of(self, parts: list[bytes], records: int) -> bytes:
        """The container of `records` records whose bytes are `parts`, joined once (a batch's
        bodies are megabytes: joining them, then the joined block into the container, copied
        them twice)."""
        size = sum(map(len, parts))
        return b"".join((self.head, zigzag_varint(records), zigzag_varint(size), *parts, SYNC_MARKER))


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


def valid_utf8(strings: Iterable[str], nullable: Iterable[str] = (), arrays: Iterable[str] = ()) -> str:
    """A condition true where every string of a row is UTF-8, as the codec requires:
    `strings` are String columns, `nullable` Nullable(String) ones, `arrays` expressions
    of Array(String)."""
    return " AND ".join(
        [
            *(f"isValidUTF8({column})" for column in strings),
            *(f"isValidUTF8(ifNull({column}, ''))" for column in nullable),
            *(f"arrayAll(text -> isValidUTF8(text), {array})" for array in arrays),
        ]
    )


class MessageLike(Protocol):
    """The part of confluent_kafka.Message the sinks read (tests pass their own)."""

    def error(self) -> Any: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...


def consumed_position(message: MessageLike) -> tuple[int, int] | None:
    """(partition, offset) of a consumed record; None for an end-of-partition notice; a
    consumer error raises KafkaException."""
    error = message.error()
    if error is not None:
        if error.code() == KafkaError._PARTITION_EOF:
            return None
        raise KafkaException(error)
    partition, offset = message.partition(), message.offset()
    if partition is None or offset is None:
        raise KafkaException(f"a consumed record without a position: {partition}@{offset}")
    return partition, offset


@dataclasses.dataclass(slots=True)
class Split:
    """A batch, split between ClickHouse's decoding and the codec's (`split`)."""

    in_container: list[MessageLike] = dataclasses.field(default_factory=list)
    container: bytes = b""  # their bodies, each followed by the batch's check and its position
    sent: Sent = dataclasses.field(default_factory=Sent)
    for_codec: list[MessageLike] = dataclasses.field(default_factory=list)  # older versions, registry ids not ours
    next_offsets: dict[int, int] = dataclasses.field(default_factory=dict)  # partition -> past its last message


def codec_reads(codec: Codec, cls: type) -> Callable[[bytes], bool]:
    """Whether the codec decodes a record of `cls`: then no varint in it is past 64 bits."""

    def reads(value: bytes) -> bool:
        try:
            codec.decode_values(value, expected=(cls,))
        except DecodeError:
            return False
        return True

    return reads


def split(
    messages: Sequence[MessageLike],
    header: bytes,
    container: Container | None,
    reads: Callable[[bytes], bool],
    *,
    screen: bool = False,
) -> Split:
    """Which messages ClickHouse decodes (in one container) and which the codec does:
    bodies that start with `header` (the current schema's) go into the container.
    `screen`: a body with the bytes of an overlong varint is read by the codec first
    (`reads`), and goes to the codec's path unless it reads it: text beyond Latin has
    those bytes too (nine bytes past 0x7f, then one above 1), and the codec's path costs
    four fifths of a sink's CPU. Without a `container`, every message goes to the codec."""
    result = Split()
    cut = len(header)
    parts: list[bytes] = []  # each body of the current schema, then its check and position
    next_offsets, append_position = result.next_offsets, result.sent.append
    in_container, for_codec = result.in_container, result.for_codec
    for message in messages:
        position = consumed_position(message)
        if position is None:
            continue
        partition, offset = position
        if offset >= next_offsets.get(partition, 0):  # whatever order a batch is in
            next_offsets[partition] = offset + 1
        value = message.value() or b""
        if (
            container is not None
            and value[:cut] == header
            and not (screen and overlong_varint(value, cut) and not reads(value))
        ):
            parts.append(value[cut:])
            append_position(parts, partition, offset)
            in_container.append(message)
        else:
            for_codec.append(message)
    if container is not None and result.in_container:
        result.container = container.of(parts, len(result.in_container))
        if not screen and overlong_varint(result.container):  # rare: look at each body
            return split(messages, header, container, reads, screen=True)
    return result


class SessionTable:
    """A temporary table of one client's session, emptied before each batch. It is created
    once per session: a CREATE ... IF NOT EXISTS before every batch took 10 ms (the insert
    into account_events of 20,000 events takes about 13). A session that has lost it (a
    restarted server, an expired one) refuses the TRUNCATE as UNKNOWN_TABLE, and is given
    it again."""

    def __init__(self, name: str, create_sql: str) -> None:
        self.name = name
        self.create_sql = create_sql
        self.truncate_sql = f"TRUNCATE TABLE {name}"
        self._created = False

    def empty(self, client: Any) -> None:
        """The table, in `client`'s session, without the last batch's rows."""
        if self._created:
            try:
                client.command(self.truncate_sql)
                return
            except DatabaseError as error:
                if UNKNOWN_TABLE not in str(error):
                    raise
                log.warning("the ClickHouse session lost its table %s; creating it again", self.name)
        client.command(self.create_sql)
        self._created = True
        client.command(self.truncate_sql)  # the rows of a batch that failed before this sink's start

    def load(self, client: Any, container: bytes, check_sql: str) -> list[tuple[Any, ...]] | str:
        """The container read by ClickHouse into the table, and the rows of `check_sql` over
        what it read; or, for bytes ClickHouse refuses, its refusal (an unreachable store
        fails again at the sink's next statement)."""
        try:
            client.raw_insert(self.name, None, insert_block=container, fmt="Avro", settings=INCOMING_SETTINGS)
            rows: list[tuple[Any, ...]] = client.query(check_sql).result_rows
        except DatabaseError as error:
            return f"ClickHouse refused them: {str(error)[:ERROR_TEXT_MAX]}"
        return rows
