"""The codec: domain objects <-> Avro single-object encoded bytes.

Wire format (Avro specification, "Single object encoding"):
    byte 0-1   C3 01                      marker
    byte 2-9   CRC-64-AVRO fingerprint    of the writer schema's canonical form, little-endian
    byte 10-   Avro binary                the record, encoded with that schema
A reader needs only the .avsc files: the fingerprint names the writer schema among the
current and released versions, and Avro schema resolution reads it into the current
one. Field names of the Avro records are the dataclass field names of the domain.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader

from codec.registry import RECORD_TYPES
from codec.schemas import SCHEMA_ROOT, LoadedSchema, load_all
from codec.writer import EncodeError, Writer, WriterBuilder

MAGIC = b"\xc3\x01"
HEADER_LENGTH = 10


class DecodeErrorCode(enum.StrEnum):
    UNDECODABLE = "UNDECODABLE"  # not single-object encoded Avro, or corrupt
    UNKNOWN_SCHEMA = "UNKNOWN_SCHEMA"  # a fingerprint no known schema version has
    UNEXPECTED_TYPE = "UNEXPECTED_TYPE"  # a valid record, but not one this topic carries
    TOO_LARGE = "TOO_LARGE"


class DecodeError(ValueError):
    def __init__(self, code: DecodeErrorCode, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


Converter = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _RecordCodec:
    cls: type
    schema: LoadedSchema
    to_record: Converter
    from_record: Converter
    header: bytes  # MAGIC + the fingerprint of the current schema
    write: Writer


@dataclasses.dataclass(frozen=True, slots=True)
class _Reader:
    writer_schema: dict[str, Any]
    reader_schema: dict[str, Any] | None  # None when the writer is the current version
    record: _RecordCodec


class Codec:
    def __init__(self, root: Path = SCHEMA_ROOT) -> None:
        current, every = load_all(root)
        self._by_class: dict[type, _RecordCodec] = {}
        writers = WriterBuilder()
        for name, cls in RECORD_TYPES.items():
            assert name in current, f"no schema for {name}"
            to_record, from_record = _converters(cls)
            schema = current[name]
            self._by_class[cls] = _RecordCodec(
                cls,
                schema,
                to_record,
                from_record,
                header=MAGIC + schema.fingerprint,
                write=writers.record_writer(cls, schema.parsed_plain),
            )
        by_name = {codec.schema.full_name: codec for codec in self._by_class.values()}
        self._by_fingerprint: dict[bytes, _Reader] = {}
        for loaded in every:
            record = by_name.get(loaded.full_name)
            if record is None:
                continue  # a nested-only type (Position, BatchLeg, RetainedKey) or one no longer used
            is_current = loaded.fingerprint == record.schema.fingerprint
            known = self._by_fingerprint.get(loaded.fingerprint)
            if known is not None:
                assert known.record is record, f"fingerprint collision between {loaded.full_name} and another type"
                continue
            self._by_fingerprint[loaded.fingerprint] = _Reader(
                writer_schema=loaded.parsed_plain,
                reader_schema=None if is_current else record.schema.parsed_plain,
                record=record,
            )

    # -- encoding -------------------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        """A domain object to single-object encoded Avro; EncodeError if a value does not
        fit its schema (a long past 64 bits, a wrong type)."""
        record = self._by_class.get(type(value))
        if record is None:
            raise EncodeError(f"{type(value).__name__} is not an Avro record type")
        out = bytearray(record.header)
        record.write(out, value)
        return bytes(out)

    def to_record(self, value: Any) -> dict[str, Any]:
        """The Avro record (a dict) a value is written as."""
        record: dict[str, Any] = self._by_class[type(value)].to_record(value)
        return record

    def fingerprint(self, cls: type) -> bytes:
        return self._by_class[cls].schema.fingerprint

    def schema(self, cls: type) -> LoadedSchema:
        return self._by_class[cls].schema

    # -- decoding -------------------------------------------------------------------------

    def decode(self, data: bytes, *, expected: tuple[type, ...] | None = None) -> Any:
        """Bytes to a domain object; DecodeError (never another exception) for bad input."""
        reader, raw = self._read(data, expected)
        try:
            return reader.record.from_record(raw)
        except Exception as error:
            raise DecodeError(
                DecodeErrorCode.UNDECODABLE, f"{reader.record.schema.full_name}: {type(error).__name__}: {error}"
            ) from error

    def decode_record(self, data: bytes, *, expected: tuple[type, ...] | None = None) -> dict[str, Any]:
        """Bytes to the plain Avro record in the current schema (enums as their symbols,
        times as integer milliseconds), without building the domain object: for readers
        that only copy fields, such as the ClickHouse sink. Same checks as `decode`."""
        _, raw = self._read(data, expected)
        return raw

    def _read(self, data: bytes, expected: tuple[type, ...] | None) -> tuple[_Reader, dict[str, Any]]:
        if len(data) < HEADER_LENGTH or data[:2] != MAGIC:
            raise DecodeError(DecodeErrorCode.UNDECODABLE, "not Avro single-object encoding (no C3 01 marker)")
        reader = self._by_fingerprint.get(bytes(data[2:HEADER_LENGTH]))
        if reader is None:
            raise DecodeError(
                DecodeErrorCode.UNKNOWN_SCHEMA, f"no known schema has fingerprint {bytes(data[2:HEADER_LENGTH]).hex()}"
            )
        if expected is not None and reader.record.cls not in expected:
            raise DecodeError(
                DecodeErrorCode.UNEXPECTED_TYPE, f"{reader.record.schema.full_name} does not belong on this topic"
            )
        buffer = io.BytesIO(data)
        buffer.seek(HEADER_LENGTH)
        try:
            raw: dict[str, Any] = schemaless_reader(buffer, reader.writer_schema, reader.reader_schema)  # type: ignore[assignment]
        except Exception as error:
            raise DecodeError(
                DecodeErrorCode.UNDECODABLE, f"{reader.record.schema.full_name}: {type(error).__name__}: {error}"
            ) from error
        if buffer.tell() != len(data):
            raise DecodeError(
                DecodeErrorCode.UNDECODABLE,
                f"{reader.record.schema.full_name}: {len(data) - buffer.tell()} bytes after the record",
            )
        return reader, raw


# -- converters between dataclasses and Avro records ----------------------------------------


def _converters(cls: type, building: dict[type, list[Converter]] | None = None) -> tuple[Converter, Converter]:
    """Compile encode/decode functions for one dataclass from its type hints.
    `building` ties recursive types (CommandResult.queried) to the functions being built."""
    building = {} if building is None else building
    if cls in building:
        slot = building[cls]
        return (lambda value: slot[0](value)), (lambda record: slot[1](record))  # noqa: PLW0108 - the slot is filled later
    slot_for_cls: list[Converter] = []
    building[cls] = slot_for_cls
    hints = typing.get_type_hints(cls)
    fields = [field.name for field in dataclasses.fields(cls)]
    plan = [(name, *_field_converters(hints[name], building)) for name in fields]
    plain = [name for name, encode, _ in plan if encode is None]
    encoded = [(name, encode) for name, encode, _ in plan if encode is not None]
    decoded = [(name, decode) for name, _, decode in plan if decode is not None]

    def to_record(value: Any) -> dict[str, Any]:
        record = {name: getattr(value, name) for name in plain}
        for name, encode in encoded:
            record[name] = encode(getattr(value, name))
        return record

    def from_record(record: dict[str, Any]) -> Any:
        for name, decode in decoded:
            record[name] = decode(record[name])
        return cls(**record)

    slot_for_cls.extend((to_record, from_record))
    return to_record, from_record


def _optional(convert: Converter | None) -> Converter | None:
    if convert is None:
        return None
    return lambda value: None if value is None else convert(value)


def _each(convert: Converter | None) -> Converter | None:
    if convert is None:
        return None
    return lambda values: [convert(value) for value in values]


def _field_converters(hint: Any, building: dict[type, list[Converter]]) -> tuple[Converter | None, Converter | None]:
    """(encode, decode) for one type; None where the value passes through unchanged."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return tuple(_optional(convert) for convert in _field_converters(inner, building))  # type: ignore[return-value]
    if origin is list:
        (item,) = typing.get_args(hint)
        return tuple(_each(convert) for convert in _field_converters(item, building))  # type: ignore[return-value]
    if origin is dict or hint in (int, str, bool, bytes):
        return None, None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = {member.name: member for member in hint}

        def decode_enum(symbol: str) -> Any:
            member = members.get(symbol)
            if member is None:
                raise ValueError(f"{hint.__name__} has no member {symbol!r}")
            return member

        return (lambda member: member.name), decode_enum
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _converters(hint, building)
    raise TypeError(f"no Avro mapping for {hint!r}")
