"""The codec against a real schema registry (Apicurio, deploy/local/registry.py): the public
schemas register (released versions, then the current ones) under FULL_TRANSITIVE, a
breaking change is refused with 409, records round-trip in the Confluent framing, and a
writer schema we do not have is fetched once and resolved into ours."""

from __future__ import annotations

import concurrent.futures
import copy
import io
import json
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from codec import Codec, DecodeError
from codec.confluent import (
    COMPATIBILITY_LEVEL,
    Framing,
    SchemaIncompatibleError,
    confluent_header,
    is_public,
    subject_name,
)
from codec.golden import EXAMPLES
from codec.schemas import SCHEMA_ROOT, strip_logical_types
from foundation.http import request_json
from foundation.schema_registry import RegistryClient, codec_for
from foundation.settings import Settings
from ledger import legs
from ledger.events import AccountEvent

pytestmark = [pytest.mark.kafka, pytest.mark.registry]

SINGLE_OBJECT = Codec()
PUBLIC_EXAMPLES = [example for example in EXAMPLES if is_public(SINGLE_OBJECT.schema(type(example)).full_name)]
EVENT = next(example for example in EXAMPLES if isinstance(example, AccountEvent))
EVENT_SUBJECT = subject_name("streamwallet.event.AccountEvent")


@pytest.fixture(scope="module")
def confluent(schema_registry_url: str) -> Codec:
    return Codec(framing=Framing.CONFLUENT, registry=RegistryClient(schema_registry_url))


def test_every_public_record_type_has_a_subject_with_its_released_and_current_versions(
    schema_registry_url: str, confluent: Codec
) -> None:
    _, subjects = request_json("GET", f"{schema_registry_url}/subjects")
    public = sorted({SINGLE_OBJECT.schema(type(example)).full_name for example in PUBLIC_EXAMPLES})
    # 16 commands (AssignOwner, SetVelocityRules), the CommandBundle, AccountEvent, CommandResult,
    # DeadLetter, AuditEvent
    assert len(public) == 21
    assert set(public) <= set(subjects)
    assert not any(name.startswith(("streamwallet.internal.", "streamwallet.state.")) for name in subjects)
    for name in public:
        _, config = request_json("GET", f"{schema_registry_url}/config/{name}")
        assert COMPATIBILITY_LEVEL in config.values()
        _, latest = request_json("GET", f"{schema_registry_url}/subjects/{name}/versions/latest")
        assert json.loads(latest["schema"]) == confluent.schema(_class_of(name)).expanded
        assert latest["id"] == confluent.schema_id(_class_of(name))
    # CommandResult carries ErrorCode, which gained a symbol after v1: two versions, v1 first.
    _, versions = request_json("GET", f"{schema_registry_url}/subjects/streamwallet.result.CommandResult/versions")
    assert len(versions) >= 2
    _, first = request_json(
        "GET", f"{schema_registry_url}/subjects/streamwallet.result.CommandResult/versions/{versions[0]}"
    )
    assert "ID_IN_USE" not in first["schema"]


def _class_of(full_name: str) -> type:
    return next(type(example) for example in EXAMPLES if SINGLE_OBJECT.schema(type(example)).full_name == full_name)


def _event_schema() -> dict[str, Any]:
    return copy.deepcopy(SINGLE_OBJECT.schema(AccountEvent).expanded)


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(field for field in schema["fields"] if field["name"] == name)


def _balance_as_text(schema: dict[str, Any]) -> None:
    _field(schema, "balance")["type"] = "string"  # breaks both ways


def _new_field_without_default(schema: dict[str, Any]) -> None:
    schema["fields"].append({"name": "branch", "type": "string"})  # old events cannot be read: backward


def _field_removed(schema: dict[str, Any]) -> None:
    schema["fields"].remove(_field(schema, "held"))  # old readers need it: forward (BACKWARD alone lets it in)


@pytest.mark.parametrize("breaking", [_balance_as_text, _new_field_without_default, _field_removed])
def test_a_breaking_change_is_refused_by_the_registry_with_409(
    schema_registry_url: str, confluent: Codec, breaking: Any
) -> None:
    schema = _event_schema()
    breaking(schema)
    status, body = request_json(
        "POST",
        f"{schema_registry_url}/subjects/{EVENT_SUBJECT}/versions",
        body={"schema": json.dumps(schema)},
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    assert status == 409, body
    with pytest.raises(SchemaIncompatibleError):
        RegistryClient(schema_registry_url).register(EVENT_SUBJECT, schema)


def test_a_codec_built_from_schemas_with_a_breaking_change_does_not_start(
    schema_registry_url: str, confluent: Codec, tmp_path: Path
) -> None:
    root = tmp_path / "avro"
    shutil.copytree(SCHEMA_ROOT, root)
    path = root / "event" / "AccountEvent.avsc"
    schema = json.loads(path.read_text())
    _field(schema, "balance")["type"] = "string"
    path.write_text(json.dumps(schema))
    with pytest.raises(SchemaIncompatibleError, match="AccountEvent"):
        Codec(root, framing=Framing.CONFLUENT, registry=RegistryClient(schema_registry_url))


def test_public_records_round_trip_in_the_confluent_framing(schema_registry_url: str, confluent: Codec) -> None:
    # A reader that writes single-object and has never seen these ids: it asks the registry.
    reader = codec_for(Settings.from_environment({}, schema_registry_url=schema_registry_url))
    for example in PUBLIC_EXAMPLES:
        data = confluent.encode(example)
        schema_id = confluent.schema_id(type(example))
        assert schema_id is not None
        # Only the framing changes: the Avro body is the generated writers' own.
        assert data == confluent_header(schema_id) + SINGLE_OBJECT.encode(example)[10:]
        assert confluent.decode(data) == example
        assert reader.decode(data) == example
        assert reader.decode_record(data) == SINGLE_OBJECT.decode_record(SINGLE_OBJECT.encode(example))
        assert confluent.decode(SINGLE_OBJECT.encode(example)) == example  # and the other framing
        with pytest.raises(DecodeError) as raised:
            SINGLE_OBJECT.decode(data)  # no registry: the id means nothing
        assert raised.value.code == "UNKNOWN_SCHEMA"
    tick = legs.Tick(worker_id="w")
    assert confluent.encode(tick) == SINGLE_OBJECT.encode(tick)  # internal records stay single-object


def test_a_writer_schema_we_do_not_have_is_fetched_and_resolved_into_ours(schema_registry_url: str) -> None:
    # A newer writer's AccountEvent, with a field we do not know, registered under a subject of its
    # own (so that the real subject keeps our schemas only).
    newer = _event_schema()
    newer["fields"].append({"name": "branch", "type": "string", "default": ""})
    registry = RegistryClient(schema_registry_url)
    schema_id = registry.register(f"test-newer-{uuid.uuid4().hex[:8]}", newer)
    record = {**SINGLE_OBJECT.to_record(EVENT), "branch": "Zurich"}
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(strip_logical_types(newer)), record)
    data = confluent_header(schema_id) + body.getvalue()
    reader = Codec(registry=registry)
    assert reader.decode(data) == EVENT
    assert reader.decode(data, expected=(AccountEvent,)) == EVENT
    with pytest.raises(DecodeError) as raised:
        reader.decode(data, expected=(legs.Tick,))
    assert raised.value.code == "UNEXPECTED_TYPE"


def test_an_id_the_registry_does_not_know_is_unknown_schema(schema_registry_url: str) -> None:
    reader = Codec(registry=RegistryClient(schema_registry_url))
    with pytest.raises(DecodeError) as raised:
        reader.decode(confluent_header(2_000_000_000) + SINGLE_OBJECT.encode(EVENT)[10:])
    assert raised.value.code == "UNKNOWN_SCHEMA"
    assert "no id 2000000000" in raised.value.reason


REGISTERING_PROCESSES = 6


def test_processes_starting_together_register_the_same_subjects_without_a_conflict(schema_registry_url: str) -> None:
    """Defect found by `STREAMWALLET_AVRO_FRAMING=confluent ./sw up` (tests/integration/test_sw_up.py):
    the worker, the query service and the gateway start together against a fresh registry,
    and Apicurio answers 409 "A rule named 'COMPATIBILITY' already exists" to all but one of
    the concurrent first PUT /config/{subject}: the others did not start. Each process here
    sets the compatibility of, and registers, the same new subjects at once."""
    subjects = [f"streamwallet.test.Concurrent{uuid.uuid4().hex[:8]}{index}" for index in range(3)]
    schema = {"type": "record", "name": "Concurrent", "namespace": "streamwallet.test", "fields": []}
    barrier = threading.Barrier(REGISTERING_PROCESSES)

    def start_up() -> list[int]:
        client = RegistryClient(schema_registry_url)
        barrier.wait()
        ids = []
        for subject in subjects:
            client.set_compatibility(subject, COMPATIBILITY_LEVEL)
            ids.append(client.register(subject, schema))
        return ids

    with concurrent.futures.ThreadPoolExecutor(REGISTERING_PROCESSES) as pool:
        answers = list(pool.map(lambda _: start_up(), range(REGISTERING_PROCESSES)))
    assert all(ids == answers[0] for ids in answers), answers
    for subject in subjects:
        status, config = request_json("GET", f"{schema_registry_url}/config/{subject}", timeout_s=10)
        assert status == 200 and config["compatibilityLevel"] == COMPATIBILITY_LEVEL, config
