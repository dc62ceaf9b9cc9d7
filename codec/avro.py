"""The codec: domain objects <-> Avro binary records in one of two framings.

Single-object encoding (Avro specification), the default, registry-free:
    byte 0-1   C3 01                      marker
    byte 2-9   CRC-64-AVRO fingerprint    of the writer schema's canonical form, little-endian
    byte 10-   Avro binary                the record, encoded with that schema
A reader needs only the .avsc files: the fingerprint names the writer schema among the
current and released versions, and Avro schema resolution reads it into the current
one. Field names of the Avro records are the dataclass field names of the domain.

The Confluent wire format (codec/confluent.py), when a deployment writes for registry-aware
tools: 00, a 4-byte schema id, the same Avro binary. Only the public records take it.

Decoding dispatches on the first byte (C3 or 00), so every reader takes both framings and a
topic can change framing while it is read. A schema id the codec has not seen is fetched
from the registry once and resolved into our current schema, like a fingerprint.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import threading
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader

from codec.confluent import (
    CONFLUENT_HEADER_LENGTH,
    CONFLUENT_MAGIC,
    Framing,
    SchemaFetcher,
    SchemaRegistry,
    SchemaRegistryError,
    UnknownSchemaIdError,
    confluent_header,
    register_schemas,
)
from codec.reader import ReaderBuilder, ReadError, RecordReader
from codec.registry import RECORD_TYPES
from codec.schemas import SCHEMA_ROOT, LoadedSchema, full_name, load_all, schema_fingerprint, strip_logical_types
from codec.writer import EncodeError, Writer, WriterBuilder

MAGIC = b"\xc3\x01"
HEADER_LENGTH = 10
SINGLE_OBJECT_FIRST_BYTE = MAGIC[0]
WRITER_SCHEMAS_CACHED_MAX = 1_000  # schema ids fetched from the registry, kept for reading


class DecodeErrorCode(enum.StrEnum):
    UNDECODABLE = "UNDECODABLE"  # neither framing (single-object, Confluent), truncated, or corrupt
    UNKNOWN_SCHEMA = "UNKNOWN_SCHEMA"  # a fingerprint or schema id no known schema version has
    UNEXPECTED_TYPE = "UNEXPECTED_TYPE"  # a valid record, but not one this topic carries
    TOO_LARGE = "TOO_LARGE"
    REGISTRY_UNAVAILABLE = "REGISTRY_UNAVAILABLE"  # a new schema id, and the registry did not answer


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
    read: RecordReader | None = None  # the generated reader (codec/reader.py), for the current version


class Codec:
    """Every record type of `root` (current and released versions). `framing` is how
    public records are written; with `registry` (a Confluent-compatible schema registry)
    the codec also reads Confluent-framed records of schema ids it has not seen, and with
    framing CONFLUENT it registers the public schemas once, here, for their ids."""

    def __init__(
        self,
        root: Path = SCHEMA_ROOT,
        *,
        framing: Framing = Framing.SINGLE_OBJECT,
        registry: SchemaRegistry | None = None,
    ) -> None:
        current, every = load_all(root)
        if framing is Framing.CONFLUENT and registry is None:
            raise ValueError("the Confluent framing needs a schema registry (schema_registry_url)")
        schema_ids = register_schemas(registry, every) if framing is Framing.CONFLUENT and registry else {}
        self.framing = framing
        self._by_class: dict[type, _RecordCodec] = {}
        writers = WriterBuilder()
        for name, cls in RECORD_TYPES.items():
            assert name in current, f"no schema for {name}"
            to_record, from_record = _converters(cls)
            schema = current[name]
            schema_id = schema_ids.get(schema.fingerprint)
            self._by_class[cls] = _RecordCodec(
                cls,
                schema,
                to_record,
                from_record,
                header=MAGIC + schema.fingerprint if schema_id is None else confluent_header(schema_id),
                write=writers.record_writer(cls, schema.parsed_plain),
            )
        self._by_name = {codec.schema.full_name: codec for codec in self._by_class.values()}
        self._by_fingerprint: dict[bytes, _Reader] = {}
        readers = ReaderBuilder()
        for loaded in every:
            record = self._by_name.get(loaded.full_name)
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
                read=readers.record_reader(loaded.parsed_plain) if is_current else None,
            )
        # Schema ids: ours (registered above) for good, others fetched once, at most WRITER_SCHEMAS_CACHED_MAX.
        self._own_schema_ids = {schema_id: self._by_fingerprint[print_] for print_, schema_id in schema_ids.items()}
        self._fetched_schema_ids: dict[int, _Reader | DecodeError] = {}
        self._fetcher = None if registry is None else SchemaFetcher(registry)
        self._fetch_lock = threading.Lock()

    # -- encoding -------------------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        """A domain object to framed Avro; EncodeError if a value does not fit its schema
        (a long past 64 bits, a wrong type)."""
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

    def header(self, cls: type) -> bytes:
        """The bytes every record of `cls` written now starts with, before its Avro body: a
        record that starts with them is of the current schema (the sink hands such bodies to
        ClickHouse as they are)."""
        return self._by_class[cls].header

    def fingerprint(self, cls: type) -> bytes:
        return self._by_class[cls].schema.fingerprint

    def schema(self, cls: type) -> LoadedSchema:
        return self._by_class[cls].schema

    def schema_id(self, cls: type) -> int | None:
        """The registry's id of a record type's current schema, if this codec writes it in
        the Confluent framing."""
        header = self._by_class[cls].header
        return int.from_bytes(header[1:], "big") if header[0] == CONFLUENT_MAGIC else None

    # -- decoding -------------------------------------------------------------------------

    def decode(self, data: bytes, *, expected: tuple[type, ...] | None = None) -> Any:
        """Bytes in either framing to a domain object; DecodeError (never another exception)
        for bad input."""
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

    def decode_values(self, data: bytes, *, expected: tuple[type, ...] | None = None) -> list[Any]:
        """Bytes to the values of the plain Avro record in the order of the current schema's
        fields, without building the dict: for readers that copy fields into rows (the sink).
        Same checks as `decode`."""
        reader, start = self._framing(data, expected)
        if reader.read is not None:
            return self._generated(reader, reader.read.values, data, start)  # type: ignore[no-any-return]
        raw = self._resolved(reader, data, start)
        return [raw[field["name"]] for field in reader.record.schema.parsed_plain["fields"]]

    def _read(self, data: bytes, expected: tuple[type, ...] | None) -> tuple[_Reader, dict[str, Any]]:
        reader, start = self._framing(data, expected)
        if reader.read is not None:  # the current version: the generated reader
            return reader, self._generated(reader, reader.read.read, data, start)
        return reader, self._resolved(reader, data, start)

    def _framing(self, data: bytes, expected: tuple[type, ...] | None) -> tuple[_Reader, int]:
        """The reader of the record's writer schema, and where the record's body starts."""
        first_byte = data[0] if data else None
        if first_byte == SINGLE_OBJECT_FIRST_BYTE:
            reader, start = self._single_object_reader(data), HEADER_LENGTH
        elif first_byte == CONFLUENT_MAGIC:
            reader, start = self._confluent_reader(data), CONFLUENT_HEADER_LENGTH
        else:
            raise DecodeError(
                DecodeErrorCode.UNDECODABLE, "neither single-object encoding (C3 01) nor the Confluent framing (00)"
            )
        if expected is not None and reader.record.cls not in expected:
            raise DecodeError(
                DecodeErrorCode.UNEXPECTED_TYPE, f"{reader.record.schema.full_name} does not belong on this topic"
            )
        return reader, start

    @staticmethod
    def _generated(reader: _Reader, read: Callable[[bytes, int], Any], data: bytes, start: int) -> Any:
        try:
            return read(data if type(data) is bytes else bytes(data), start)
        except ReadError as error:
            raise DecodeError(DecodeErrorCode.UNDECODABLE, f"{reader.record.schema.full_name}: {error}") from None

    @staticmethod
    def _resolved(reader: _Reader, data: bytes, start: int) -> dict[str, Any]:
        """fastavro's reader, resolving an older writer schema into the current one."""
        buffer = io.BytesIO(data)
        buffer.seek(start)
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
        return raw

    def _single_object_reader(self, data: bytes) -> _Reader:
        if len(data) < HEADER_LENGTH or data[:2] != MAGIC:
            raise DecodeError(DecodeErrorCode.UNDECODABLE, "not Avro single-object encoding (no C3 01 marker)")
        reader = self._by_fingerprint.get(bytes(data[2:HEADER_LENGTH]))
        if reader is None:
            raise DecodeError(
                DecodeErrorCode.UNKNOWN_SCHEMA, f"no known schema has fingerprint {bytes(data[2:HEADER_LENGTH]).hex()}"
            )
        return reader

    def _confluent_reader(self, data: bytes) -> _Reader:
        if len(data) < CONFLUENT_HEADER_LENGTH:
            raise DecodeError(DecodeErrorCode.UNDECODABLE, f"a Confluent header is 5 bytes, the value {len(data)}")
        schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_LENGTH], "big")
        verdict = self._own_schema_ids.get(schema_id) or self._fetched_schema_ids.get(schema_id)
        if verdict is None:
            with self._fetch_lock:  # one request per new id, whichever thread sees it first
                verdict = self._fetched_schema_ids.get(schema_id)
                if verdict is None:
                    verdict = self._reader_for_schema(schema_id, self._fetch(schema_id))
                    if len(self._fetched_schema_ids) >= WRITER_SCHEMAS_CACHED_MAX:
                        del self._fetched_schema_ids[next(iter(self._fetched_schema_ids))]  # the oldest
                    self._fetched_schema_ids[schema_id] = verdict
        if isinstance(verdict, DecodeError):
            raise DecodeError(verdict.code, verdict.reason)
        return verdict

    def _fetch(self, schema_id: int) -> dict[str, Any]:
        """The writer schema of an id from the registry (which may not know it yet, or be down)."""
        if self._fetcher is None:
            raise DecodeError(
                DecodeErrorCode.UNKNOWN_SCHEMA,
                f"schema id {schema_id} in the Confluent framing, and no schema registry is configured",
            )
        try:
            return self._fetcher.fetch(schema_id)
        except UnknownSchemaIdError:
            raise DecodeError(DecodeErrorCode.UNKNOWN_SCHEMA, f"the schema registry has no id {schema_id}") from None
        except SchemaRegistryError as error:
            raise DecodeError(DecodeErrorCode.REGISTRY_UNAVAILABLE, f"schema id {schema_id}: {error}") from error

    def _reader_for_schema(self, schema_id: int, schema: dict[str, Any]) -> _Reader | DecodeError:
        """Writer schema from the registry, reader schema ours (the current version); or why
        records of this schema cannot be read, for good (an id's schema never changes)."""
        try:
            name = full_name(schema)
            parsed = parse_schema(schema)
            plain = parse_schema(strip_logical_types(schema))
        except Exception as error:  # noqa: BLE001 - whatever the registry holds, the verdict is the same
            return DecodeError(
                DecodeErrorCode.UNKNOWN_SCHEMA, f"schema id {schema_id} is not a usable Avro record schema: {error}"
            )
        record = self._by_name.get(name)
        if record is None:
            return DecodeError(DecodeErrorCode.UNKNOWN_SCHEMA, f"schema id {schema_id} is {name}, none of ours")
        known = self._by_fingerprint.get(schema_fingerprint(parsed))  # type: ignore[arg-type]
        if known is not None and known.record is record:
            return known  # one of our versions: read as a fingerprint would be
        return _Reader(writer_schema=plain, reader_schema=record.schema.parsed_plain, record=record)  # type: ignore[arg-type]


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

    decode: Converter = from_record
    if getattr(getattr(cls, "__dataclass_params__", None), "frozen", False):
        decode = _interned(from_record, fields)
    slot_for_cls.extend((to_record, decode))
    return to_record, decode


INTERNED_MAX = 1024  # distinct values of a frozen record type kept per codec; then dropped and kept afresh


def _interned(from_record: Converter, fields: list[str]) -> Converter:
    """Decoding of a frozen record type (a principal: on every command, and few of them)
    that hands out one object per distinct value: equal values are interchangeable, and
    the writer and the hash chain find an object they met before by identity. A record
    whose fields cannot be a key (a map, a nested record) is built afresh each time."""
    interned: dict[tuple[Any, ...], Any] = {}

    def from_interned_record(record: dict[str, Any]) -> Any:
        try:
            key = tuple(tuple(value) if type(value) is list else value for value in map(record.__getitem__, fields))
            value = interned.get(key)
        except (TypeError, KeyError):  # unhashable, or a field missing (refused below): not one to intern
            return from_record(record)
        if value is None:
            value = from_record(record)  # raises for a record that is not a value of the type: nothing kept
            if len(interned) >= INTERNED_MAX:
                interned.clear()
            interned[key] = value
        return value

    return from_interned_record


def _optional(convert: Converter | None) -> Converter | None:
    if convert is None:
        return None
    return lambda value: None if value is None else convert(value)


def _each(convert: Converter | None) -> Converter | None:
    if convert is None:
        return None
    return lambda values: [convert(value) for value in values]


def _sorted_list(convert: Converter | None) -> Converter:
    return lambda values: [value if convert is None else convert(value) for value in sorted(values)]


def _frozen_set(convert: Converter | None) -> Converter:
    return lambda values: frozenset(value if convert is None else convert(value) for value in values)


def _field_converters(hint: Any, building: dict[type, list[Converter]]) -> tuple[Converter | None, Converter | None]:
    """(encode, decode) for one type; None where the value passes through unchanged."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return tuple(_optional(convert) for convert in _field_converters(inner, building))  # type: ignore[return-value]
    if origin is list:
        (item,) = typing.get_args(hint)
        return tuple(_each(convert) for convert in _field_converters(item, building))  # type: ignore[return-value]
    if origin is frozenset:  # an Avro array written in sorted order, so equal sets encode alike
        (item,) = typing.get_args(hint)
        encode_item, decode_item = _field_converters(item, building)
        return _sorted_list(encode_item), _frozen_set(decode_item)
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
