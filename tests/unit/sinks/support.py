"""Feeding the sink without Kafka: messages as the consumer would return them."""

from __future__ import annotations

import dataclasses
from typing import Any

from codec import Codec
from foundation.settings import Settings
from ledger.events import AccountEvent
from sinks.events import EventSink
from topologies import partition_for

PARTITIONS = 8


@dataclasses.dataclass(frozen=True, slots=True)
class FakeMessage:
    _partition: int
    _offset: int
    _value: bytes | None
    _key: bytes | None = None
    _topic: str = "streamwallet.events"

    def error(self) -> Any:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


def messages(events: list[AccountEvent], codec: Codec, partitions: int = PARTITIONS) -> list[FakeMessage]:
    """The events as the events topic would hold them: keyed by account, offsets per partition."""
    next_offset = [0] * partitions
    result = []
    for event in events:
        partition = partition_for(event.account_id, partitions)
        result.append(FakeMessage(partition, next_offset[partition], codec.encode(event), event.account_id.encode()))
        next_offset[partition] += 1
    return result


def sink(client: Any, database: str, codec: Codec, *, small_batch_events: int | None = None) -> EventSink:
    """The sink of the tests; `small_batch_events=0` sends every batch through ClickHouse's decoding."""
    settings = Settings(partitions=PARTITIONS)
    if small_batch_events is None:
        return EventSink(settings, client, database=database, codec=codec)
    return EventSink(settings, client, database=database, codec=codec, small_batch_events=small_batch_events)


def write_in_batches(target: EventSink, batch: list[FakeMessage], size: int) -> None:
    for start in range(0, len(batch), size):
        target.write(batch[start : start + size])
