"""Producing when librdkafka's local queue may be full.

`produce` raises BufferError when the queue holds `queue.buffering.max.messages`; the
answer is to serve delivery reports for a moment (which lets librdkafka send some) and
try again. The worker's loop does the same inline (streams/processor.py `_produce`): it
runs for every record of every transaction.

A record produced inside a traced span (a gateway request) carries the span's W3C
`traceparent` as a Kafka header, so the worker continues the trace
(foundation/observability.py); outside any span nothing is added.
"""

from __future__ import annotations

from typing import Any

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
