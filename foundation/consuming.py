"""Reading from Kafka: without waiting for a batch to fill, and through the moments when
partition leadership is still settling.

confluent-kafka's `consume(n, timeout)` returns only when n messages arrived or the
timeout passed: with little traffic every call waits the whole timeout. `take_available`
takes what is there at once, and waits (bounded) only when there is nothing; it never
hands back a message fetched for an assignment a rebalance has since replaced.

Right after topics are created or a broker restarts, metadata and offset requests fail
for a moment with errors such as NOT_LEADER_FOR_PARTITION that librdkafka does not mark
retriable: `retry_transient` retries those, for a bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

TRANSIENT_BUDGET_S_DEFAULT = 5.0  # while leadership settles after a topic is created
TRANSIENT_BACKOFF_S = 0.1
TRANSIENT_BACKOFF_S_MAX = 2.0
_SETTLING_ERRORS = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        # A leader or coordinator moving: the client's view is a step behind the cluster's.
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.OFFSET_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError._ALL_BROKERS_DOWN,
    }
)
T = TypeVar("T")


def is_transient(error: KafkaError) -> bool:
    return bool(error.retriable()) or error.code() in _SETTLING_ERRORS


def retry_transient(call: Callable[[], T], *, budget_s: float = TRANSIENT_BUDGET_S_DEFAULT) -> T:
    """`call()`, retried with a growing back-off while it fails with a transient Kafka error,
    for `budget_s` at most (then the last error is raised). A worker passes the time a
    broker takes to be replaced (a leader election, a coordinator moving); a tool that
    just created a topic passes a few seconds."""
    deadline = time.monotonic() + budget_s
    backoff_s = TRANSIENT_BACKOFF_S
    while True:
        try:
            return call()
        except KafkaException as exception:
            if not is_transient(exception.args[0]) or time.monotonic() + backoff_s > deadline:
                raise
            time.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, TRANSIENT_BACKOFF_S_MAX)


def take_available(
    consumer: Any, batch_max: int, wait_s: float, *, generation: Callable[[], int] = lambda: 0
) -> list[Any]:
    """Up to `batch_max` messages: whatever is there now, else the first to arrive within
    `wait_s` together with whatever came with it.

    A consumer serves rebalance callbacks inside these calls. `generation` is a counter the
    caller's callbacks bump on every assignment change: messages returned by a call made
    before a change belong to the assignment it ended (their partition may be gone, or be
    reassigned and fetched again from its committed position), so only what the calls
    after the last change returned is kept. (A call's own messages always come after any
    rebalance it served: librdkafka drops what it had fetched for the old assignment.)"""
    messages: list[Any] = consumer.consume(num_messages=batch_max, timeout=0)
    if messages:
        return messages
    first = consumer.poll(wait_s)
    if first is None:
        return []
    seen = generation()
    more: list[Any] = consumer.consume(num_messages=batch_max - 1, timeout=0)
    if generation() != seen:
        return more
    return [first, *more]
