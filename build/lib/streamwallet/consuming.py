"""Reading from Kafka without waiting for a batch to fill.

confluent-kafka's `consume(n, timeout)` returns only when n messages arrived or the
timeout passed: with little traffic every call waits the whole timeout. This takes what
is there at once, and waits (bounded) only when there is nothing.
"""

from __future__ import annotations

from typing import Any


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
