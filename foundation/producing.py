"""Producing when librdkafka's local queue may be full.

`produce` raises BufferError when the queue holds `queue.buffering.max.messages`; the
answer is to serve delivery reports for a moment (which lets librdkafka send some) and
try again. The worker's loop does the same inline (streams/processor.py `_produce`): it
runs for every record of every transaction.

A record produced inside a traced span (a gateway request) carries the span's W3C
`traceparent` as a Kafka header, so the worker continues the trace
(foundation/observability.py); outside any span nothing is added.

`flush` is the one way a producer with delivery callbacks is flushed: see its note.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException

from foundation.observability import current_trace_headers


def produce_when_room(producer: Any, topic: str, value: bytes, key: bytes, *, wait_s: float, **options: Any) -> None:
    if "headers" not in options:
        headers = current_trace_headers()
        if headers is not None:
            options["headers"] = headers
    while True:
        try:
            producer.produce(topic, value, key, **options)
            return
        except BufferError:
            producer.poll(wait_s)


def flush(producer: Any, timeout_s: float) -> int:
    """producer.flush(timeout_s): the number of records still queued, or the client's fatal
    error raised as the KafkaException it is.

    confluent-kafka 2.16's flush() goes on serving delivery reports after it has met a
    fatal error (a transactional producer fenced by a newer epoch): it calls the next
    Python callback with that KafkaException still set, and raises SystemError ("...
    returned a result with an exception set") whose cause is the KafkaException. Callers
    answer a KafkaException (the worker replaces its producer, the CLI says why); a
    SystemError stopped the worker. poll() and commit_transaction() raise the
    KafkaException itself. The test: tests/integration/test_transactional_producer.py
    `test_a_producer_fenced_while_its_records_wait_raises_its_fatal_error_from_abort`."""
    try:
        return int(producer.flush(timeout_s))
    except SystemError as error:
        cause = error.__cause__
        if isinstance(cause, KafkaException):
            # confluent-kafka never frees that SystemError. Through its cause's traceback it
            # held every frame the fatal error then passed through, with the failed producer
            # and the worker's batch: a zombie fenced again and again piled them up
            # (test_worker_faults' fenced worker). Both are cut loose from the frames.
            error.__cause__ = error.__context__ = error.__traceback__ = None
            cause.__traceback__ = None
            raise KafkaException(cause.args[0]) from None
        raise
