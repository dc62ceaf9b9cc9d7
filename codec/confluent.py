"""The Confluent wire format, and what the codec needs from the schema registry behind it.

    byte 0     00            magic byte
    byte 1-4   schema id     big-endian, assigned by a Confluent-compatible schema registry
    byte 5-    Avro binary   the record, written with that schema (the same bytes as in
                             single-object encoding: only the header differs)

Which records: the public ones, read by consumers that are not ours (commands, events,
results, dead letters). Internal records (legs, the changelog, RocksDB) stay in
single-object encoding whatever the setting: the worker's state must never depend on a
registry's ids, which a registry that loses its storage hands out again to other schemas.

Subjects: one per record type, named by the record's full name (Confluent's
RecordNameStrategy, `streamwallet.event.AccountEvent`). The commands topic carries
fourteen record types, so one subject per topic (TopicNameStrategy) cannot hold them; each
record type lives on one topic only, our compatibility promise is per record type, and
the topic names carry a deployment's prefix, which would give each deployment its own
copy of the same evolution line (TopicRecordNameStrategy).

Compatibility: FULL_TRANSITIVE on every subject: a schema must read data of every
earlier version and be readable by every earlier version's reader, which is what
codec/compatibility.py and tests/unit/codec/test_schema_evolution.py promise against
the released versions. Released versions are registered first, in order, then the
current one: a current schema that breaks the promise is refused by the registry.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from codec.schemas import LoadedSchema

CONFLUENT_MAGIC = 0x00
CONFLUENT_HEADER_LENGTH = 5
SCHEMA_ID_BYTES = 4
COMPATIBILITY_LEVEL = "FULL_TRANSITIVE"
PUBLIC_NAMESPACES = frozenset(
    {
        "streamwallet.command",
        "streamwallet.event",
        "streamwallet.result",
        "streamwallet.deadletter",
        "streamwallet.audit",
    }
)

# How the codec treats a schema id it has not seen: one request each, remembered.
UNKNOWN_IDS_REMEMBERED_MAX = 10_000  # ids the registry said it does not know
UNKNOWN_ID_RETRY_MS = 60_000  # asked again after this long (a registry may learn it)
REGISTRY_DOWN_RETRY_MS = 5_000  # after a failed request, unknown ids fail at once this long


class Framing(enum.StrEnum):
    SINGLE_OBJECT = "single-object"  # C3 01 + CRC-64-AVRO fingerprint: registry-free, the default
    CONFLUENT = "confluent"  # 00 + 4-byte schema id: needs a Confluent-compatible registry


class SchemaRegistryError(Exception):
    """The registry could not be reached, timed out, or answered something unexpected."""


class SchemaIncompatibleError(SchemaRegistryError):
    """The registry refused a schema as incompatible with the subject's earlier versions (409)."""


class UnknownSchemaIdError(LookupError):
    """The registry has no schema with this id."""


class SchemaRegistry(Protocol):
    """The part of the Confluent schema registry API the codec uses
    (foundation/schema_registry.py talks it over HTTP)."""

    def set_compatibility(self, subject: str, level: str) -> None: ...

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """The id of `schema` under `subject`, registering it if new; SchemaIncompatibleError
        if the subject's compatibility rule refuses it."""
        ...

    def schema_by_id(self, schema_id: int) -> dict[str, Any] | None:
        """The schema with this id, or None if the registry has none."""
        ...


def is_public(full_name: str) -> bool:
    return full_name.rsplit(".", 1)[0] in PUBLIC_NAMESPACES


def subject_name(full_name: str) -> str:
    """RecordNameStrategy: the subject is the record's full name."""
    return full_name


def confluent_header(schema_id: int) -> bytes:
    return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(SCHEMA_ID_BYTES, "big")


def register_schemas(registry: SchemaRegistry, versions: Iterable[LoadedSchema]) -> dict[bytes, int]:
    """Register every public record type's versions, released ones first (in order), the
    current last, under FULL_TRANSITIVE; the schema id of each version by its fingerprint.
    `versions` is codec.schemas.load_all's list: the current versions, then each release."""
    by_type: dict[str, list[LoadedSchema]] = {}
    for loaded in versions:
        if is_public(loaded.full_name):
            by_type.setdefault(loaded.full_name, []).append(loaded)
    ids: dict[bytes, int] = {}
    for full_name, loaded_versions in by_type.items():
        subject = subject_name(full_name)
        released = [loaded for loaded in loaded_versions if loaded.version != "current"]
        current = [loaded for loaded in loaded_versions if loaded.version == "current"]
        oldest, *later = [*released, *current]
        # The rule is set once the subject exists (a registry may refuse it for an unknown
        # subject); the oldest version has nothing to be compatible with.
        ids[oldest.fingerprint] = registry.register(subject, oldest.expanded)
        registry.set_compatibility(subject, COMPATIBILITY_LEVEL)
        for loaded in later:
            ids[loaded.fingerprint] = registry.register(subject, loaded.expanded)
    return ids


class SchemaFetcher:
    """Writer schemas by id from the registry, for ids the codec has not seen. Hostile
    input cannot turn into a stream of requests or waits: an id the registry does not
    know is remembered (bounded) and not asked again for a while, and after a failed
    request every unknown id fails at once until the registry is tried again."""

    def __init__(self, registry: SchemaRegistry, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._clock = clock
        self._unknown_until: dict[int, float] = {}
        self._down_until = 0.0

    def fetch(self, schema_id: int) -> dict[str, Any]:
        """The writer schema; UnknownSchemaIdError, or SchemaRegistryError if the registry
        cannot answer (now, or recently)."""
        now = self._clock()
        if now < self._down_until:
            raise SchemaRegistryError(
                f"the schema registry failed {self._down_until - now:.1f}s before its next try (see the earlier error)"
            )
        if now < self._unknown_until.get(schema_id, 0.0):
            raise UnknownSchemaIdError(schema_id)
        try:
            schema = self._registry.schema_by_id(schema_id)
        except SchemaRegistryError:
            self._down_until = now + REGISTRY_DOWN_RETRY_MS / 1000
            raise
        if schema is None:
            self._remember_unknown(schema_id, now)
            raise UnknownSchemaIdError(schema_id)
        self._unknown_until.pop(schema_id, None)
        return schema

    def _remember_unknown(self, schema_id: int, now: float) -> None:
        if len(self._unknown_until) >= UNKNOWN_IDS_REMEMBERED_MAX:
            del self._unknown_until[next(iter(self._unknown_until))]  # the oldest
        self._unknown_until[schema_id] = now + UNKNOWN_ID_RETRY_MS / 1000
