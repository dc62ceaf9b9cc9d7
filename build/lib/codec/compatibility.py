"""Schema evolution check: every current schema against every released version, both
ways, on real encoded records.

    backward: data written with the released (old) schema, read with the current one
    forward:  data written with the current (new) schema, read with the released one

Records are generated at random from each writer schema (seeded), encoded with fastavro
and read back through Avro schema resolution.

    python -m codec.compatibility       prints the problems; exit 1 if there are any
"""

from __future__ import annotations

import io
import random
import sys
import zlib
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from codec.schemas import SCHEMA_ROOT, load_folder, released_versions, strip_logical_types

SAMPLES_PER_PAIR = 25
COLLECTION_ITEMS_MAX = 3
DEPTH_MAX = 4


def random_datum(schema: Any, rng: random.Random, named: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A random value valid for an (expanded, logical-type-free) Avro schema."""
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in named:
            return random_datum(named[schema], rng, named, depth + 1)
        return _primitive(schema, rng)
    if isinstance(schema, list):
        if depth >= DEPTH_MAX and "null" in schema:
            return None  # recursive types (CommandResult.queried) end here
        return random_datum(rng.choice(schema), rng, named, depth + 1)
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        named[schema["name"]] = schema
    if kind == "record":
        return {field["name"]: random_datum(field["type"], rng, named, depth + 1) for field in schema["fields"]}
    if kind == "enum":
        return rng.choice(schema["symbols"])
    if kind == "fixed":
        return bytes(rng.randrange(256) for _ in range(schema["size"]))
    if kind == "array":
        count = 0 if depth >= DEPTH_MAX else rng.randint(0, COLLECTION_ITEMS_MAX)
        return [random_datum(schema["items"], rng, named, depth + 1) for _ in range(count)]
    if kind == "map":
        count = 0 if depth >= DEPTH_MAX else rng.randint(0, COLLECTION_ITEMS_MAX)
        return {f"k{i}": random_datum(schema["values"], rng, named, depth + 1) for i in range(count)}
    return _primitive(kind, rng)


def _primitive(kind: str, rng: random.Random) -> Any:
    if kind == "null":
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-(2**31), 2**31 - 1)
    if kind == "long":
        return rng.randint(-(2**63), 2**63 - 1)
    if kind == "string":
        return "".join(rng.choice("abcXYZ-|é") for _ in range(rng.randint(0, 6)))
    if kind == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 6)))
    raise ValueError(f"unsupported type {kind}")


def check_pair(writer: dict[str, Any], reader: dict[str, Any], *, samples: int, seed: int) -> list[str]:
    """Problems reading `samples` random records written with `writer` through `reader`."""
    writer_plain, reader_plain = strip_logical_types(writer), strip_logical_types(reader)
    parsed_writer = parse_schema(writer_plain)
    parsed_reader = parse_schema(reader_plain)
    rng = random.Random(seed)
    problems = []
    for _ in range(samples):
        datum = random_datum(writer_plain, rng)
        buffer = io.BytesIO()
        schemaless_writer(buffer, parsed_writer, datum)
        buffer.seek(0)
        try:
            schemaless_reader(buffer, parsed_writer, parsed_reader)
        except Exception as error:  # noqa: BLE001 - any failure is the finding
            problems.append(f"{type(error).__name__}: {error}")
            break
    return problems


def check_all(samples: int = SAMPLES_PER_PAIR) -> list[str]:
    current = load_folder(SCHEMA_ROOT, "current")
    problems = []
    for version in released_versions():
        released = load_folder(SCHEMA_ROOT / "released" / version, version)
        for name, old in released.items():
            new = current.get(name)
            if new is None:
                problems.append(f"{name}: released in {version}, missing now (never remove a record type)")
                continue
            for direction, writer, reader in (("backward", old, new), ("forward", new, old)):
                for problem in check_pair(
                    writer.expanded, reader.expanded, samples=samples, seed=zlib.crc32(name.encode())
                ):
                    problems.append(f"{name} {direction} against {version}: {problem}")
    return problems


def main() -> int:
    problems = check_all()
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) across released versions {released_versions()}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
