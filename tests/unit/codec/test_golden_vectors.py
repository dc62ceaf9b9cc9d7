"""The golden vectors of schemas/avro/golden/vectors.json are current, decode with our
codec, and decode with a second, independent implementation (the Apache Avro library),
whose fingerprints agree with ours."""

from __future__ import annotations

import io
import json
from typing import Any

import avro.io
import avro.schema
import pytest

from codec import Codec
from codec.golden import EXAMPLES, VECTORS_PATH, render
from codec.schemas import SCHEMA_ROOT, load_folder, strip_logical_types

CODEC = Codec()
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text())
CURRENT = load_folder(SCHEMA_ROOT, "current")


def test_vectors_file_is_current() -> None:
    assert VECTORS_PATH.read_text() == render(CODEC), "run: python -m codec.golden --write"
    assert {vector["type"] for vector in VECTORS} == {CODEC.schema(type(example)).full_name for example in EXAMPLES}


@pytest.mark.parametrize("index", range(len(VECTORS)), ids=[vector["type"] for vector in VECTORS])
def test_vector_decodes_to_its_example(index: int) -> None:
    vector, example = VECTORS[index], EXAMPLES[index]
    data = bytes.fromhex(vector["single_object_hex"])
    assert data[:2] == b"\xc3\x01" and data[2:10].hex() == vector["fingerprint"]
    assert CODEC.decode(data) == example


@pytest.mark.parametrize("name", sorted(CURRENT))
def test_fingerprints_agree_with_the_apache_avro_library(name: str) -> None:
    # The Apache library keeps {"type": "long"} for a logical type in its canonical form,
    # unlike the specification and Java; without logicalType the form is the same.
    schema = avro.schema.parse(json.dumps(strip_logical_types(CURRENT[name].expanded)))
    assert bytes(schema.fingerprint("CRC-64-AVRO")) == CURRENT[name].fingerprint


@pytest.mark.parametrize("index", range(len(VECTORS)), ids=[vector["type"] for vector in VECTORS])
def test_vector_decodes_with_the_apache_avro_library(index: int) -> None:
    vector = VECTORS[index]
    schema = avro.schema.parse(json.dumps(strip_logical_types(CURRENT[vector["type"]].expanded)))
    body = bytes.fromhex(vector["single_object_hex"])[10:]
    datum = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(body)))
    assert datum == CODEC.to_record(EXAMPLES[index])
