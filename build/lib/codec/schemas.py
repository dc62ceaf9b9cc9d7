"""Loading `schemas/avro/`: self-contained schemas and their fingerprints.

The .avsc files refer to shared named types (ErrorCode, Position, ...) defined in
their own files. For single-object encoding a schema must be self-contained, or its
fingerprint would not change when a type it refers to does; so every schema is
expanded, each named type defined inline at its first use, exactly as Java's
`Schema.Parser` and `SchemaNormalization` do. The fingerprint is CRC-64-AVRO of the
Parsing Canonical Form of that expanded schema.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas import AVRO_ROOT

SCHEMA_ROOT = AVRO_ROOT
RELEASED_DIR = "released"
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED_KINDS = frozenset({"record", "enum", "fixed", "error"})


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedSchema:
    full_name: str
    version: str  # "current" or a released version such as "v1"
    expanded: dict[str, Any]  # self-contained JSON schema
    parsed: dict[str, Any]  # fastavro-parsed, for writing and as the writer schema
    parsed_plain: dict[str, Any]  # the same without logical types, for reading into plain ints
    fingerprint: bytes  # 8 bytes, little-endian, as single-object encoding puts it


def full_name(schema: dict[str, Any], namespace: str | None = None) -> str:
    name: str = schema["name"]
    if "." in name:
        return name
    space = schema.get("namespace", namespace)
    return f"{space}.{name}" if space else name


def read_definitions(folder: Path) -> dict[str, dict[str, Any]]:
    """Every top-level named type of a folder's .avsc files, by full name."""
    definitions: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*.avsc")):
        if RELEASED_DIR in path.relative_to(folder).parts:
            continue
        schema = json.loads(path.read_text())
        name = full_name(schema)
        assert name not in definitions, f"{name} is defined twice under {folder}"
        assert path.stem == schema["name"].rsplit(".", 1)[-1], f"{path} must be named after its type"
        definitions[name] = schema
    return definitions


def expand(schema: Any, definitions: dict[str, dict[str, Any]], namespace: str | None, defined: set[str]) -> Any:
    """Inline referenced named types at their first use (later uses stay names)."""
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        name = schema if "." in schema else f"{namespace}.{schema}" if namespace else schema
        if name in defined:
            return name
        assert name in definitions, f"unknown type {name}"
        return expand(definitions[name], definitions, namespace, defined)
    if isinstance(schema, list):
        return [expand(branch, definitions, namespace, defined) for branch in schema]
    kind = schema["type"]
    if kind in NAMED_KINDS:
        name = full_name(schema, namespace)
        defined.add(name)
        result = copy.deepcopy(schema)
        result["name"] = name
        result.pop("namespace", None)
        if kind in ("record", "error"):
            inner_namespace = name.rsplit(".", 1)[0]
            result["fields"] = [
                {**field, "type": expand(field["type"], definitions, inner_namespace, defined)}
                for field in schema["fields"]
            ]
        return result
    if kind == "array":
        return {**schema, "items": expand(schema["items"], definitions, namespace, defined)}
    if kind == "map":
        return {**schema, "values": expand(schema["values"], definitions, namespace, defined)}
    assert kind in PRIMITIVES, f"unsupported schema {schema!r}"
    return schema  # a primitive written as an object, e.g. with a logicalType


def strip_logical_types(schema: Any) -> Any:
    if isinstance(schema, list):
        return [strip_logical_types(item) for item in schema]
    if isinstance(schema, dict):
        return {key: strip_logical_types(value) for key, value in schema.items() if key != "logicalType"}
    return schema


def schema_fingerprint(parsed: dict[str, Any]) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def load_folder(folder: Path, version: str) -> dict[str, LoadedSchema]:
    """Every record type of a folder, expanded and parsed."""
    definitions = read_definitions(folder)
    loaded: dict[str, LoadedSchema] = {}
    for name, schema in definitions.items():
        if schema["type"] != "record":
            continue
        expanded = expand(schema, definitions, None, set())
        parsed: dict[str, Any] = parse_schema(expanded)  # type: ignore[assignment]
        loaded[name] = LoadedSchema(
            full_name=name,
            version=version,
            expanded=expanded,
            parsed=parsed,
            parsed_plain=parse_schema(strip_logical_types(expanded)),  # type: ignore[arg-type]
            fingerprint=schema_fingerprint(parsed),
        )
    return loaded


def released_versions(root: Path = SCHEMA_ROOT) -> list[str]:
    folder = root / RELEASED_DIR
    if not folder.exists():
        return []
    return sorted((path.name for path in folder.iterdir() if path.is_dir()), key=lambda v: int(v.lstrip("v")))


def load_all(root: Path = SCHEMA_ROOT) -> tuple[dict[str, LoadedSchema], list[LoadedSchema]]:
    """The current schemas by name, and every version (current and released) for reading."""
    current = load_folder(root, "current")
    every = list(current.values())
    for version in released_versions(root):
        every.extend(load_folder(root / RELEASED_DIR / version, version).values())
    return current, every
