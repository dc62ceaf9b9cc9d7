"""The record written to the dead-letter topic for a message no worker could accept."""

from __future__ import annotations

import dataclasses

DEAD_LETTER_VALUE_BYTES_MAX = 1024 * 1024  # larger originals are cut; the reason says so
# A key is cut too: the letter carries it twice (in its body and as its Kafka key), and a
# topic's max.message.bytes must hold both and the value.
DEAD_LETTER_KEY_BYTES_MAX = 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    reason_code: str
    reason: str
    worker_id: str
    failed_at_ms: int
