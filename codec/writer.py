"""Avro binary writers generated per record type, straight from the domain objects.

fastavro's writer interprets the schema for every field of every record (about 0.6 µs
for each optional field and 0.4 µs for each enum) and needs a dict built first; a
worker encodes about nine records per transfer, so encoding was 40% of its time. Here
each record type gets one Python function, generated once from its schema and its
dataclass's type hints (as `dataclasses` generates `__init__`), that appends the Avro
binary encoding of an object's attributes to a bytearray. The bytes are the Avro
specification's, identical to fastavro's (tests/unit/codec/test_writer.py compares
them on every record type); `codec/reader.py` generates the readers alike.

Values are checked as they are written: a long outside 64 bits, an int outside 32 bits,
a value of the wrong type, a fixed of the wrong size or an unknown enum member raises
`EncodeError`, and nothing is written for that record.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Callable
from typing import Any

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

Writer = Callable[[bytearray, Any], None]


class EncodeError(ValueError):
    """A value that the schema cannot carry."""


def _append_varint(out: bytearray, value: int) -> None:
    """Avro's variable-length zig-zag encoding of an int or long, appended to `out`."""
    number = (value << 1) ^ (value >> 63)
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    _append_varint(out, value)
    return bytes(out)


# Most lengths and many longs are small: their encodings are looked up, not computed.
_SMALL_LOW, _SMALL_HIGH = -64, 8192
_SMALL = tuple(_varint_bytes(value) for value in range(_SMALL_LOW, _SMALL_HIGH))
_THREE_BYTES_HIGH = 2**20  # up to here a non-negative long takes at most three bytes


def zigzag_varint(value: int) -> bytes:
    """An Avro long's bytes; small ones looked up, offsets of a young topic computed inline
    (the events sink appends one to every event it hands ClickHouse)."""
    if _SMALL_LOW <= value < _SMALL_HIGH:
        return _SMALL[value - _SMALL_LOW]
    if _SMALL_HIGH <= value < _THREE_BYTES_HIGH:
        number = value << 1
        return bytes((number & 0x7F | 0x80, (number >> 7) & 0x7F | 0x80, number >> 14))
    return _varint_bytes(value)


# Larger longs recur too: a transfer writes each new balance four times (its event, the
# account, the result's position and the dedup entry's copy of it), every account's upper
# limit (2**63 - 1: nine bytes) twice, the batch's time ten times. Their encodings are kept
# once computed, up to LARGE_KEPT_MAX of them (then dropped and kept afresh).
LARGE_KEPT_MAX = 4096
_large: dict[int, bytes] = {}


def write_long(out: bytearray, value: int, low: int = LONG_MIN, high: int = LONG_MAX) -> None:
    if type(value) is not int:  # bool is an int to Python, not to Avro
        raise EncodeError(f"expected an integer, got {type(value).__name__}")
    if _SMALL_LOW <= value < _SMALL_HIGH:
        out += _SMALL[value - _SMALL_LOW]
        return
    if not low <= value <= high:
        raise EncodeError(f"{value} is outside the range {low}..{high}")
    data = _large.get(value)
    if data is None:
        data = _varint_bytes(value)
        if len(_large) >= LARGE_KEPT_MAX:
            _large.clear()
        _large[value] = data
    out += data


def write_int(out: bytearray, value: int) -> None:
    write_long(out, value, INT_MIN, INT_MAX)


def write_string(out: bytearray, value: str) -> None:
    if type(value) is not str:
        raise EncodeError(f"expected a string, got {type(value).__name__}")
    data = value.encode()
    write_long(out, len(data))
    out += data


def write_bytes(out: bytearray, value: bytes) -> None:
    if type(value) is not bytes:
        raise EncodeError(f"expected bytes, got {type(value).__name__}")
    write_long(out, len(value))
    out += value


def write_boolean(out: bytearray, value: bool) -> None:
    if value is True:
        out.append(1)
    elif value is False:
        out.append(0)
    else:
        raise EncodeError(f"expected a boolean, got {type(value).__name__}")


def _fixed_writer(size: int) -> Writer:
    def write_fixed(out: bytearray, value: bytes) -> None:
        if type(value) is not bytes or len(value) != size:
            raise EncodeError(f"expected {size} bytes")
        out += value

    return write_fixed


class _EnumWriter:
    def __init__(self, cls: type[enum.Enum], symbols: list[str]) -> None:
        assert {member.name for member in cls} <= set(symbols), f"{cls.__name__} has members the schema lacks"
        self.cls = cls
        self.encoded = {member: zigzag_varint(symbols.index(member.name)) for member in cls}

    def __call__(self, out: bytearray, value: enum.Enum) -> None:
        try:
            data = self.encoded.get(value)
        except TypeError:  # unhashable
            data = None
        if data is None:
            raise EncodeError(f"{value!r} is not a {self.cls.__name__}")
        out += data


class _OptionalWriter:
    def __init__(self, write: Writer, null_index: int) -> None:
        self.write = write
        self.null_branch = zigzag_varint(null_index)
        self.value_branch = zigzag_varint(1 - null_index)

    def __call__(self, out: bytearray, value: Any) -> None:
        if value is None:
            out += self.null_branch
        else:
            out += self.value_branch
            self.write(out, value)


class _KeptRecordWriter:
    """A nested record of a frozen dataclass (a principal: on every event, result and dedup
    entry, and few of them): the bytes of each value written are kept and written again for
    the same object. The codec's decoder hands out one object per distinct principal
    (`codec/avro.py`, interned), so a worker's principals are found by identity, without
    hashing or comparing their fields. Kept with the object itself, whose id cannot be
    reused while it is kept, and only for a hashable value (its fields cannot change: a
    frozen dataclass holding a list could). At most `KEPT_RECORDS_MAX` values are kept, then
    the kept ones are dropped and kept afresh. Any other value is written, and refused, as any."""

    def __init__(self, write: Writer) -> None:
        self.write = write
        self.kept: dict[int, tuple[Any, bytes]] = {}

    def __call__(self, out: bytearray, value: Any) -> None:
        kept = self.kept.get(id(value))
        if kept is not None and kept[0] is value:
            out += kept[1]
            return
        start = len(out)
        self.write(out, value)  # raises for a value the schema cannot carry: nothing kept
        try:
            hash(value)
        except TypeError:  # a field that may change: written each time
            return
        if len(self.kept) >= KEPT_RECORDS_MAX:
            self.kept.clear()
        self.kept[id(value)] = (value, bytes(out[start:]))


KEPT_RECORDS_MAX = 1024


def _array_writer(write_item: Writer) -> Writer:
    def write_array(out: bytearray, values: list[Any]) -> None:
        if type(values) is not list:
            raise EncodeError(f"expected a list, got {type(values).__name__}")
        if values:
            write_long(out, len(values))
            for value in values:
                write_item(out, value)
        out.append(0)

    return write_array


def _set_writer(write_item: Writer) -> Writer:
    """A frozenset as an Avro array, in sorted order: equal sets encode to equal bytes."""

    def write_set(out: bytearray, values: frozenset[Any]) -> None:
        if type(values) is not frozenset:
            raise EncodeError(f"expected a frozenset, got {type(values).__name__}")
        if values:
            write_long(out, len(values))
            for value in sorted(values):
                write_item(out, value)
        out.append(0)

    return write_set


def _map_writer(write_value: Writer) -> Writer:
    def write_map(out: bytearray, values: dict[str, Any]) -> None:
        if type(values) is not dict:
            raise EncodeError(f"expected a dict, got {type(values).__name__}")
        if values:
            write_long(out, len(values))
            for key, value in values.items():
                write_string(out, key)
                write_value(out, value)
        out.append(0)

    return write_map


_PRIMITIVES: dict[str, Writer] = {
    "long": write_long,
    "int": write_int,
    "string": write_string,
    "bytes": write_bytes,
    "boolean": write_boolean,
}


class WriterBuilder:
    """Builds the writers of record types that share named types (a fastavro-parsed
    schema defines each named type once and refers to it by name afterwards)."""

    def __init__(self) -> None:
        self._records: dict[str, Writer] = {}
        self._named: dict[str, Any] = {}

    def record_writer(self, cls: type, schema: dict[str, Any]) -> Writer:
        assert schema["type"] == "record", schema
        name = schema["name"]
        if name in self._records:
            return self._records[name]
        self._named[name] = schema
        # A slot filled below ties recursive types (CommandResult.queried) to this writer.
        slot: list[Writer] = []
        self._records[name] = lambda out, value: slot[0](out, value)  # noqa: PLW0108 - slot[0] is set below
        hints = typing.get_type_hints(cls)
        fields = {field.name for field in dataclasses.fields(cls)}
        names = [field["name"] for field in schema["fields"]]
        assert set(names) == fields, f"{cls.__name__}: fields {sorted(fields)} against schema {sorted(names)}"
        writers = {field["name"]: self._writer(hints[field["name"]], field["type"]) for field in schema["fields"]}
        slot.append(_generate(cls, names, writers))
        self._records[name] = slot[0]
        return slot[0]

    def _writer(self, hint: Any, schema: Any) -> Writer:
        if isinstance(schema, str) and schema in self._named:
            schema = self._named[schema]
        if isinstance(schema, list):
            assert len(schema) == 2 and "null" in schema, f"only optional unions are used: {schema}"
            null_index = schema.index("null")
            (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
            return _OptionalWriter(self._writer(inner, schema[1 - null_index]), null_index)
        if isinstance(schema, str):
            return _PRIMITIVES[schema]
        kind = schema["type"]
        if kind in _PRIMITIVES:  # {"type": "long"}: a logical type stripped
            return _PRIMITIVES[kind]
        if kind == "record":
            write = self.record_writer(hint, schema)
            frozen = getattr(getattr(hint, "__dataclass_params__", None), "frozen", False)
            return _KeptRecordWriter(write) if frozen else write
        if kind in ("enum", "fixed"):
            self._named.setdefault(schema["name"], schema)  # later uses name it
            if kind == "enum":
                return _EnumWriter(hint, schema["symbols"])
            return _fixed_writer(schema["size"])
        if kind == "array" and typing.get_origin(hint) is frozenset:
            return _set_writer(self._writer(typing.get_args(hint)[0], schema["items"]))
        if kind == "array":
            return _array_writer(self._writer(typing.get_args(hint)[0], schema["items"]))
        if kind == "map":
            return _map_writer(self._writer(typing.get_args(hint)[1], schema["values"]))
        raise TypeError(f"no writer for {schema!r}")


def _generate(cls: type, names: list[str], writers: dict[str, Writer]) -> Writer:
    """One function per record: the fields in schema order. Longs, ints, strings, enums
    and optional ones are written inline (their common cases); the rest call their writer."""
    namespace: dict[str, Any] = {"cls": cls, "EncodeError": EncodeError, "SMALL": _SMALL, "LARGE": _large}
    lines = [
        "def write_record(out, value):",
        "    if type(value) is not cls:",
        f"        raise EncodeError(f'expected a {cls.__name__}, got {{type(value).__name__}}')",
    ]
    for name in names:
        lines.append(f"    v = value.{name}")
        lines.extend(_inline(writers[name], name, "    ", namespace))
    source = "\n".join(lines)
    # The source is built from our own schema files, never from input.
    exec(compile(source, f"<avro writer of {cls.__name__}>", "exec"), namespace)
    function: Writer = namespace["write_record"]
    return function


def _inline(writer: Writer, name: str, indent: str, namespace: dict[str, Any]) -> list[str]:
    """Source lines that write the value in `v` with `writer`."""
    if writer is write_long:
        # A large long written before (a balance, a limit, the batch's time) is looked up
        # here, not in a call: its bytes were kept by `write_long` once range-checked as a long.
        namespace[f"w_{name}"] = writer
        return [
            f"{indent}if type(v) is not int:",
            f"{indent}    w_{name}(out, v)",
            f"{indent}elif {_SMALL_LOW} <= v < {_SMALL_HIGH}:",
            f"{indent}    out += SMALL[v - {_SMALL_LOW}]",
            f"{indent}else:",
            f"{indent}    d = LARGE.get(v)",
            f"{indent}    if d is None:",
            f"{indent}        w_{name}(out, v)",
            f"{indent}    else:",
            f"{indent}        out += d",
        ]
    if writer is write_int:  # an int's range is narrower: the longs' kept bytes are not for it
        namespace[f"w_{name}"] = writer
        return [
            f"{indent}if type(v) is int and {_SMALL_LOW} <= v < {_SMALL_HIGH}:",
            f"{indent}    out += SMALL[v - {_SMALL_LOW}]",
            f"{indent}else:",
            f"{indent}    w_{name}(out, v)",
        ]
    if writer is write_boolean:
        namespace[f"w_{name}"] = writer
        return [
            f"{indent}if v is False:",
            f"{indent}    out.append(0)",
            f"{indent}elif v is True:",
            f"{indent}    out.append(1)",
            f"{indent}else:",
            f"{indent}    w_{name}(out, v)",
        ]
    if writer is write_string:
        namespace["write_long"] = write_long
        return [
            f"{indent}if type(v) is not str:",
            f"{indent}    raise EncodeError(f'{name}: expected a string, got {{type(v).__name__}}')",
            f"{indent}v = v.encode()",
            f"{indent}if len(v) < {_SMALL_HIGH}:",
            f"{indent}    out += SMALL[len(v) - {_SMALL_LOW}]",
            f"{indent}else:",
            f"{indent}    write_long(out, len(v))",
            f"{indent}out += v",
        ]
    if isinstance(writer, _EnumWriter):
        namespace[f"e_{name}"] = writer.encoded
        namespace[f"e_type_{name}"] = writer.cls
        namespace[f"w_{name}"] = writer
        return [
            f"{indent}d = e_{name}.get(v) if type(v) is e_type_{name} else None",
            f"{indent}if d is None:",  # the symbol as text, or not a member: the writer decides
            f"{indent}    w_{name}(out, v)",
            f"{indent}else:",
            f"{indent}    out += d",
        ]
    if isinstance(writer, _OptionalWriter):
        namespace[f"null_{name}"] = writer.null_branch
        namespace[f"value_{name}"] = writer.value_branch
        return [
            f"{indent}if v is None:",
            f"{indent}    out += null_{name}",
            f"{indent}else:",
            f"{indent}    out += value_{name}",
            *_inline(writer.write, name, indent + "    ", namespace),
        ]
    namespace[f"w_{name}"] = writer
    return [f"{indent}w_{name}(out, v)"]
