"""End offsets of topic partitions, as the admin client reports them.

`high_watermarks` is where the log ends (committed or not); `last_stable_offsets` is
where read_committed readers can reach: every transaction before it is decided, so the
records below it are a consistent cut of everything committed. Both retry while
leadership settles (new topics, broker restarts)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable
from typing import Any

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from foundation.consuming import TRANSIENT_BUDGET_S_DEFAULT, retry_transient

LIST_OFFSETS_TIMEOUT_S = 10.0
_STALE_METADATA = frozenset(
    {KafkaError.FENCED_LEADER_EPOCH, KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.NOT_LEADER_FOR_PARTITION}
)


def end_offsets(
    admin: Any,
    topic: str,
    partitions: Iterable[int],
    *,
    isolation: IsolationLevel,
    budget_s: float = TRANSIENT_BUDGET_S_DEFAULT,
) -> dict[int, int]:
    """One ListOffsets request per leader; the high watermark (READ_UNCOMMITTED) or the
    last stable offset (READ_COMMITTED) of each partition."""
    requested = {TopicPartition(topic, partition): OffsetSpec.latest() for partition in partitions}  # type: ignore[no-untyped-call]

    def list_offsets() -> dict[int, int]:
        futures = admin.list_offsets(requested, isolation_level=isolation, request_timeout=LIST_OFFSETS_TIMEOUT_S)
        try:
            ends = {
                tp.partition: future.result(timeout=LIST_OFFSETS_TIMEOUT_S).offset for tp, future in futures.items()
            }
        except concurrent.futures.TimeoutError:
            # No answer at all (a leader that died with the request in flight): as transient
            # as librdkafka's own timeouts, so retried the same way.
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "ListOffsets got no answer")) from None
        except KafkaException as exception:
            if exception.args[0].code() in _STALE_METADATA:
                # The admin client asked with a leader epoch the cluster has moved past and does
                # not refresh its metadata by itself: refresh it, then the retry asks the new leader.
                admin.list_topics(topic, timeout=LIST_OFFSETS_TIMEOUT_S)
            raise
        missing = sorted(partition for partition, offset in ends.items() if offset < 0)
        if missing:
            # A logical offset instead of an end: the leader cannot tell yet (just elected).
            raise KafkaException(KafkaError(KafkaError.OFFSET_NOT_AVAILABLE, f"{topic} {missing}: no end offset yet"))
        return ends

    return retry_transient(list_offsets, budget_s=budget_s)


def high_watermarks(
    admin: Any, topic: str, partitions: Iterable[int], *, budget_s: float = TRANSIENT_BUDGET_S_DEFAULT
) -> dict[int, int]:
    return end_offsets(admin, topic, partitions, isolation=IsolationLevel.READ_UNCOMMITTED, budget_s=budget_s)


def last_stable_offsets(
    admin: Any, topic: str, partitions: Iterable[int], *, budget_s: float = TRANSIENT_BUDGET_S_DEFAULT
) -> dict[int, int]:
    return end_offsets(admin, topic, partitions, isolation=IsolationLevel.READ_COMMITTED, budget_s=budget_s)
