"""Reading from Kafka: without waiting for a batch to fill, and through the moments when
partition leadership is still settling.

confluent-kafka's `consume(n, timeout)` returns only when n messages arrived or the
timeout passed: with little traffic every call waits the whole timeout. `take_available`
takes what is there at once, and waits (bounded) only when there is nothing.

Right after topics are created or a broker restarts, metadata and offset requests fail
for a moment with errors such as NOT_LEADER_FOR_PARTITION that librdkafka does not mark
retriable: `retry_transient` retries those, a bounded number of times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

TRANSIENT_RETRIES_MAX = 50
TRANSIENT_BACKOFF_S = 0.1
_SETTLING_ERRORS = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
)
T = TypeVar("T")


def is_transient(error: KafkaError) -> bool:
    return bool(error.retriable()) or error.code() in _SETTLING_ERRORS


def retry_transient(call: Callable[[], T]) -> T:
    """`call()`, retried while it fails with a transient Kafka error (about 5 s at most)."""
    for attempt in range(TRANSIENT_RETRIES_MAX):
        try:
            return call()
        except KafkaException as exception:
            if attempt == TRANSIENT_RETRIES_MAX - 1 or not is_transient(exception.args[0]):
                raise
            time.sleep(TRANSIENT_BACKOFF_S)
    raise AssertionError("unreachable")


def take_available(consumer: Any, batch_max: int, wait_s: float) -> list[Any]:
    """Up to `batch_max` messages: whatever is there now, else the first to arrive within
    `wait_s` together with whatever came with it."""
    messages: list[Any] = consumer.consume(num_messages=batch_max, timeout=0)
    if messages:
        return messages
    first = consumer.poll(wait_s)
    if first is None:
        return []
    return [first, *consumer.consume(num_messages=batch_max - 1, timeout=0)]
