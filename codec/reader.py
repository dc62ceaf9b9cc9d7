"""Avro binary readers generated per record type: bytes to the plain Avro record.

fastavro's compiled reader interprets the schema for every field of every record and
took about 20 µs of CPU for one 128-byte `AccountEvent`: the sink decodes every event,
a worker every command and every state record it loads, a client every result. Here
each record type's current schema gets one Python function, generated once (as
`codec/writer.py` generates the writers), that reads one record from a position in the
bytes and returns the dict fastavro's `schemaless_reader` returns: enums as their
symbols, logical types as plain numbers, an optional union as None or its value
(tests/unit/codec/test_reader.py compares them on every record type, and on corrupted
bytes). Records written with another version of a schema still go through fastavro's
schema resolution; these readers read only records whose writer schema is the current one.

Bad bytes raise `ReadError`, never another exception: a read past the end, a negative
length, an enum index or a union branch the schema does not have, a varint longer than
ten bytes or past 64 bits, an int past 32 bits, a boolean other than 0 or 1, a string
that is not UTF-8, records nested past Python's recursion limit, bytes left after the record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (data, position, end) -> (value, position after it)
Reader = Callable[[bytes, int, int], tuple[Any, int]]
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


class ReadError(ValueError):
    """Bytes that are not a record of the schema."""


def read_long(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Avro's zig-zag varint, any length up to ten bytes."""
    number = 0
    shift = 0
    while (byte := data[pos]) & 0x80:
        number |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if shift > 63:
            raise ReadError("a varint longer than ten bytes")
    number |= byte << shift
    pos += 1
    if number >> 64:
        raise ReadError("a varint past 64 bits")
    return (number >> 1) ^ -(number & 1), pos


def read_int(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value, pos = read_long(data, pos, end)
    if not INT_MIN <= value <= INT_MAX:
        raise ReadError(f"an int outside 32 bits: {value}")
    return value, pos


def _length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    size, pos = read_long(data, pos, end)
    if size < 0 or pos + size > end:
        raise ReadError(f"a length of {size} at byte {pos}, {end - pos} bytes left")
    return size, pos


def read_bytes(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    size, pos = _length(data, pos, end)
    return data[pos : pos + size], pos + size


def read_string(data: bytes, pos: int, end: int) -> tuple[str, int]:
    size, pos = _length(data, pos, end)
    return data[pos : pos + size].decode(), pos + size  # UnicodeDecodeError: see `RecordReader.read`


def read_boolean(data: bytes, pos: int, end: int) -> tuple[bool, int]:
    byte = data[pos]
    if byte > 1:
        raise ReadError(f"a boolean of {byte}")
    return byte == 1, pos + 1


def _fixed_reader(size: int) -> Reader:
    def read_fixed(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
        if pos + size > end:
            raise ReadError(f"a fixed of {size} bytes at byte {pos}, {end - pos} bytes left")
        return data[pos : pos + size], pos + size

    return read_fixed


class _EnumReader:
    def __init__(self, symbols: list[str]) -> None:
        self.symbols = tuple(symbols)

    def __call__(self, data: bytes, pos: int, end: int) -> tuple[str, int]:
        index, pos = read_long(data, pos, end)
        if not 0 <= index < len(self.symbols):
            raise ReadError(f"enum index {index} of {len(self.symbols)} symbols")
        return self.symbols[index], pos


class _OptionalReader:
    def __init__(self, read: Reader, null_index: int) -> None:
        self.read = read
        self.null_index = null_index

    def __call__(self, data: bytes, pos: int, end: int) -> tuple[Any, int]:
        branch, pos = read_long(data, pos, end)
        if branch == self.null_index:
            return None, pos
        if branch != 1 - self.null_index:
            raise ReadError(f"union branch {branch} of 2")
        return self.read(data, pos, end)


def _blocks(data: bytes, pos: int, end: int, read_item: Reader) -> tuple[list[Any], int]:
    """The items of an array or map: blocks of a count (negative: followed by the block's
    size in bytes, which is skipped), ending with a count of zero."""
    items: list[Any] = []
    while True:
        count, pos = read_long(data, pos, end)
        if count == 0:
            return items, pos
        if count < 0:
            count = -count
            _, pos = read_long(data, pos, end)
        if count > end - pos:  # every item takes at least one byte: refuse a huge count at once
            raise ReadError(f"a block of {count} items, {end - pos} bytes left")
        for _ in range(count):
            item, pos = read_item(data, pos, end)
            items.append(item)


class _ArrayReader:
    def __init__(self, read_item: Reader) -> None:
        self.read_item = read_item

    def __call__(self, data: bytes, pos: int, end: int) -> tuple[list[Any], int]:
        return _blocks(data, pos, end, self.read_item)


def _map_reader(read_value: Reader) -> Reader:
    def read_entry(data: bytes, pos: int, end: int) -> tuple[tuple[str, Any], int]:
        key, pos = read_string(data, pos, end)
        value, pos = read_value(data, pos, end)
        return (key, value), pos

    def read_map(data: bytes, pos: int, end: int) -> tuple[dict[str, Any], int]:
        entries, pos = _blocks(data, pos, end, read_entry)
        return dict(entries), pos

    return read_map


_PRIMITIVES: dict[str, Reader] = {
    "long": read_long,
    "int": read_int,
    "string": read_string,
    "bytes": read_bytes,
    "boolean": read_boolean,
}


class RecordReader:
    """Reads whole framed records of one type: the body from `start`, nothing after it."""

    __slots__ = ("_read", "_read_values", "name")

    def __init__(self, name: str, read: Reader, read_values: Reader) -> None:
        self.name = name
        self._read = read
        self._read_values = read_values

    def read(self, data: bytes, start: int) -> dict[str, Any]:
        """The record as fastavro reads it: a dict."""
        record: dict[str, Any] = _whole(self._read, data, start)
        return record

    def values(self, data: bytes, start: int) -> list[Any]:
        """The record's top-level values in the schema's field order, without building the dict
        (the sink copies them into table rows); nested records are dicts."""
        values: list[Any] = _whole(self._read_values, data, start)
        return values


def _whole(read: Reader, data: bytes, start: int) -> Any:
    end = len(data)
    try:
        record, pos = read(data, start, end)
    except IndexError:
        raise ReadError(f"the bytes end inside the record ({end - start} bytes)") from None
    except UnicodeDecodeError as error:
        raise ReadError(f"a string that is not UTF-8: {error.reason}") from None
    except RecursionError:  # CommandResult.queried holds a CommandResult: bytes can nest them without end
        raise ReadError("records nested too deep") from None
    if pos != end:
        raise ReadError(f"{end - pos} bytes after the record")
    return record


class ReaderBuilder:
    """Builds the readers of record types that share named types (a fastavro-parsed
    schema defines each named type once and refers to it by name afterwards)."""

    def __init__(self) -> None:
        self._records: dict[str, Reader] = {}
        self._fields: dict[str, list[tuple[str, Reader]]] = {}
        self._named: dict[str, Any] = {}

    def record_reader(self, schema: dict[str, Any]) -> RecordReader:
        read = self._record(schema)
        fields = self._fields[schema["name"]]
        return RecordReader(schema["name"], read, _generate(schema["name"], fields, as_list=True))

    def _record(self, schema: dict[str, Any]) -> Reader:
        name = schema["name"]
        if name in self._records:
            return self._records[name]
        self._named[name] = schema
        # A slot filled below ties recursive types (CommandResult.queried) to this reader.
        slot: list[Reader] = []
        self._records[name] = lambda data, pos, end: slot[0](data, pos, end)  # noqa: PLW0108 - set below
        fields = [(field["name"], self._reader(field["type"])) for field in schema["fields"]]
        self._fields[name] = fields
        slot.append(_generate(name, fields))
        self._records[name] = slot[0]
        return slot[0]

    def _reader(self, schema: Any) -> Reader:
        if isinstance(schema, str) and schema in self._named:
            schema = self._named[schema]
        if isinstance(schema, list):
            if len(schema) != 2 or "null" not in schema:
                raise TypeError(f"only optional unions are read here: {schema}")
            null_index = schema.index("null")
            return _OptionalReader(self._reader(schema[1 - null_index]), null_index)
        if isinstance(schema, str):
            return _PRIMITIVES[schema]
        kind = schema["type"]
        if kind in _PRIMITIVES:  # {"type": "long"}: a logical type stripped
            return _PRIMITIVES[kind]
        if kind == "record":
            return self._record(schema)
        if kind == "enum":
            self._named.setdefault(schema["name"], schema)  # later uses name it
            return _EnumReader(schema["symbols"])
        if kind == "fixed":
            self._named.setdefault(schema["name"], schema)
            return _fixed_reader(schema["size"])
        if kind == "array":
            return _ArrayReader(self._reader(schema["items"]))
        if kind == "map":
            return _map_reader(self._reader(schema["values"]))
        raise TypeError(f"no reader for {schema!r}")


def _generate(name: str, fields: list[tuple[str, Reader]], *, as_list: bool = False) -> Reader:
    """One function per record: the fields in schema order, returned as a dict (or a list).
    Longs, strings, enums, arrays of enums and optional ones are read inline in their
    common case (the first byte or bytes say what follows); the rest, and the uncommon
    cases, call their reader, which also says what is wrong."""
    namespace: dict[str, Any] = {"read_long": read_long, "read_string": read_string}
    lines = ["def read_record(data, pos, end):"]
    for index, (_, read) in enumerate(fields):
        lines.extend("    " + line for line in _inline(read, f"v{index}", f"r{index}", namespace))
    if as_list:
        lines.append(f"    return [{', '.join(f'v{index}' for index in range(len(fields)))}], pos")
    else:
        values = ", ".join(f"{field!r}: v{index}" for index, (field, _) in enumerate(fields))
        lines.append(f"    return {{{values}}}, pos")
    source = "\n".join(lines)
    # The source is built from our own schema files, never from input.
    exec(compile(source, f"<avro reader of {name}>", "exec"), namespace)
    function: Reader = namespace["read_record"]
    return function


def _inline(read: Reader, target: str, helper: str, namespace: dict[str, Any]) -> list[str]:
    """Source lines that read one value into `target`, advancing `pos`."""
    namespace[helper] = read
    if read is read_long:  # up to three bytes (-1,048,576..1,048,575) inline
        return [
            "b = data[pos]",
            "if b < 0x80:",
            f"    {target} = (b >> 1) ^ -(b & 1)",
            "    pos += 1",
            "elif (c := data[pos + 1]) < 0x80:",
            "    b = (b & 0x7F) | (c << 7)",
            f"    {target} = (b >> 1) ^ -(b & 1)",
            "    pos += 2",
            "elif (d := data[pos + 2]) < 0x80:",
            "    b = (b & 0x7F) | ((c & 0x7F) << 7) | (d << 14)",
            f"    {target} = (b >> 1) ^ -(b & 1)",
            "    pos += 3",
            "else:",
            f"    {target}, pos = read_long(data, pos, end)",
        ]
    if read is read_string:
        return [
            "b = data[pos]",
            "if b < 0x80 and not b & 1 and pos + 1 + (b >> 1) <= end:",  # a short string, all there
            f"    {target} = data[pos + 1 : pos + 1 + (b >> 1)].decode()",
            "    pos += 1 + (b >> 1)",
            "else:",
            f"    {target}, pos = read_string(data, pos, end)",
        ]
    if isinstance(read, _EnumReader):
        namespace[helper + "s"] = read.symbols
        return [
            "b = data[pos]",
            f"if b < 0x80 and not b & 1 and (b >> 1) < {len(read.symbols)}:",
            f"    {target} = {helper}s[b >> 1]",
            "    pos += 1",
            "else:",
            f"    {target}, pos = {helper}(data, pos, end)",
        ]
    if isinstance(read, _ArrayReader) and isinstance(read.read_item, _EnumReader):
        # One block of fewer than 64 symbols, each one byte (Principal.roles): looked up at once.
        symbols = read.read_item.symbols
        namespace[helper + "t"] = tuple(
            symbols[byte >> 1] if byte < 0x80 and not byte & 1 and byte >> 1 < len(symbols) else None
            for byte in range(256)
        )
        return [
            "b = data[pos]",
            "if b == 0:",
            f"    {target} = []",
            "    pos += 1",
            "elif b < 0x80 and not b & 1 and pos + 1 + (b >> 1) < end and data[pos + 1 + (b >> 1)] == 0 "
            f"and None not in (t := [{helper}t[x] for x in data[pos + 1 : pos + 1 + (b >> 1)]]):",
            f"    {target} = t",
            "    pos += 2 + (b >> 1)",
            "else:",
            f"    {target}, pos = {helper}(data, pos, end)",
        ]
    if isinstance(read, _OptionalReader):
        null_byte, value_byte = read.null_index << 1, (1 - read.null_index) << 1
        return [
            "b = data[pos]",
            f"if b == {null_byte}:",
            f"    {target} = None",
            "    pos += 1",
            f"elif b == {value_byte}:",
            "    pos += 1",
            *("    " + line for line in _inline(read.read, target, helper + "i", namespace)),
            "else:",
            f"    {target}, pos = {helper}(data, pos, end)",
        ]
    return [f"{target}, pos = {helper}(data, pos, end)"]
