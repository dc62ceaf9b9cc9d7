"""Producing when librdkafka's local queue may be full.

`produce` raises BufferError when the queue holds `queue.buffering.max.messages`; the
answer is to serve delivery reports for a moment (which lets librdkafka send some) and
try again. The worker's loop does the same inline (streams/processor.py `_produce`): it
runs for every record of every transaction.
"""

from __future__ import annotations

from typing import Any


def produce_when_room(producer: Any, topic: str, value: bytes, key: bytes, *, wait_s: float, **options: Any) -> None:
    while True:
        try:
            producer.produce(topic, value, key, **options)
            return
        except BufferError:
            producer.poll(wait_s)
