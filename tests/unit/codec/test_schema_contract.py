"""The .avsc files and the domain's dataclasses describe the same records: same field
names in the same order, compatible types, and every enum's symbols are its members'
names plus UNKNOWN (what an older reader sees for a symbol added later)."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

import pytest

from codec import Codec
from codec.registry import RECORD_TYPES
from codec.schemas import SCHEMA_ROOT, load_folder, read_definitions

CODEC = Codec()
AVRO_PRIMITIVE = {int: {"long", "int"}, str: {"string"}, bool: {"boolean"}, bytes: {"bytes", "fixed"}}


def _check(hint: Any, schema: Any, where: str) -> None:
    if isinstance(schema, dict) and schema.get("type") in ("long", "int", "string", "boolean", "bytes"):
        schema = schema["type"]
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        assert isinstance(schema, list) and schema[0] == "null", f"{where}: nullable must be [null, ...] first"
        _check(inner, schema[1], where)
    elif origin in (list, frozenset):
        assert schema["type"] == "array", where
        _check(typing.get_args(hint)[0], schema["items"], where)
    elif origin is dict:
        assert schema["type"] == "map" and schema["values"] == "string", where
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(schema, dict):
            assert schema["type"] == "enum", where
            assert schema["symbols"] == ["UNKNOWN", *(member.name for member in hint)], where
            assert schema.get("default") == "UNKNOWN", f"{where}: enums need a default for forward compatibility"
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(schema, dict):
            _check_record(hint, schema)
    else:
        kind = schema["type"] if isinstance(schema, dict) else schema
        assert kind in AVRO_PRIMITIVE[hint], f"{where}: {hint} vs {schema}"


def _check_record(cls: type, schema: dict[str, Any]) -> None:
    hints = typing.get_type_hints(cls)
    fields = [field.name for field in dataclasses.fields(cls)]
    assert [field["name"] for field in schema["fields"]] == fields, f"{schema['name']} fields differ from {cls}"
    for field in schema["fields"]:
        assert field.get("doc"), f"{schema['name']}.{field['name']} needs a doc"
        _check(hints[field["name"]], field["type"], f"{schema['name']}.{field['name']}")


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_schema_matches_dataclass(name: str) -> None:
    schema = load_folder(SCHEMA_ROOT, "current")[name].expanded
    assert schema.get("doc"), f"{name} needs a doc"
    _check_record(RECORD_TYPES[name], schema)


def test_every_record_schema_is_mapped_or_nested() -> None:
    definitions = read_definitions(SCHEMA_ROOT)
    nested_only = {
        "streamwallet.common.Position",
        "streamwallet.common.BatchLeg",
        "streamwallet.common.Principal",
        "streamwallet.state.RetainedKey",
        "streamwallet.state.VelocityBucket",
    }
    records = {name for name, schema in definitions.items() if schema["type"] == "record"}
    assert records - nested_only == set(RECORD_TYPES)


def test_fingerprints_are_distinct_and_stable_across_loads() -> None:
    fingerprints = {name: CODEC.fingerprint(cls) for name, cls in RECORD_TYPES.items()}
    assert len(set(fingerprints.values())) == len(fingerprints)
    again = Codec()
    assert {name: again.fingerprint(cls) for name, cls in RECORD_TYPES.items()} == fingerprints
