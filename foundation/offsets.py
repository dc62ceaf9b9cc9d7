"""End offsets of topic partitions, as the admin client reports them.

`high_watermarks` is where the log ends (committed or not); `last_stable_offsets` is
where read_committed readers can reach: every transaction before it is decided, so the
records below it are a consistent cut of everything committed. Both retry while
leadership settles (new topics, broker restarts)."""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from foundation.consuming import TRANSIENT_BUDGET_S_DEFAULT, is_transient, retry_transient

log = logging.getLogger(__name__)

# A leader answers ListOffsets in milliseconds; one that died with the request in flight never
# does, and every second waited here is a second of a take-over (retried within the budget).
LIST_OFFSETS_TIMEOUT_S = 4.0
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
    renew: Callable[[], Any] | None = None,
) -> dict[int, int]:
    """One ListOffsets request per leader; the high watermark (READ_UNCOMMITTED) or the
    last stable offset (READ_COMMITTED) of each partition.

    With `renew`, each ask after a failed one uses a new client from it: a client that met a
    broker just back from a pause can be deaf for good (topologies.admin.fresh_admin), and a
    worker's restore would then ask it until its budget ran out."""
    requested = {TopicPartition(topic, partition): OffsetSpec.latest() for partition in partitions}  # type: ignore[no-untyped-call]
    client = admin

    def ask() -> dict[int, int]:
        nonlocal client
        try:
            return list_offsets(client)
        except KafkaException:
            if renew is not None:
                client = renew()
            raise

    def list_offsets(admin: Any) -> dict[int, int]:
        futures = admin.list_offsets(requested, isolation_level=isolation, request_timeout=LIST_OFFSETS_TIMEOUT_S)
        # Only the failure leaves the `except` blocks, and the metadata refresh follows them: a
        # confluent-kafka call that raises while another exception is being handled (a refresh
        # that fails, in an outage) leaks a reference to the handled one (2.16, measured), and
        # with its traceback every frame and client the ask held. Through an outage a worker's
        # restore asks again and again with new clients, each holding librdkafka's threads and
        # a socket: they piled up (tests/unit/foundation/test_offsets_clients.py).
        failure: KafkaError | None = None
        try:
            ends = {
                tp.partition: future.result(timeout=LIST_OFFSETS_TIMEOUT_S).offset for tp, future in futures.items()
            }
        except concurrent.futures.TimeoutError:
            # No answer at all (a leader that died with the request in flight): as transient
            # as librdkafka's own timeouts, so retried the same way, after a metadata refresh.
            failure = KafkaError(KafkaError._TIMED_OUT, "ListOffsets got no answer")
        except KafkaException as exception:
            failure = exception.args[0]
        if failure is not None:
            raise _asked_in_vain(admin, topic, failure)
        missing = sorted(partition for partition, offset in ends.items() if offset < 0)
        if missing:
            # A logical offset instead of an end: the leader cannot tell yet (just elected).
            raise KafkaException(KafkaError(KafkaError.OFFSET_NOT_AVAILABLE, f"{topic} {missing}: no end offset yet"))
        return ends

    return retry_transient(ask, budget_s=budget_s)


def _asked_in_vain(admin: Any, topic: str, error: KafkaError) -> KafkaException:
    """What a failed ListOffsets raises, once the client's metadata is refreshed where a
    refresh lets the next ask reach the leader."""
    if error.code() == KafkaError._NOENT:
        # "Failed to query partition leaders: No leaders found": the client's metadata
        # names no leader yet (a broker just woken from a pause, still fenced, answers
        # metadata without them; a partition just created). As settling as a leader
        # election: asked again, after a refresh, within the budget. The test:
        # tests/integration/test_end_offsets.py.
        # A user who may not describe the topic gets the same local error: the refusal,
        # which the metadata carries, is raised as it is (not retried).
        refusal = _refresh_metadata(admin, topic, error.str())
        if refusal is not None and refusal.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            return KafkaException(refusal)
        return KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE, f"{topic}: {error.str()}"))
    if error.code() in _STALE_METADATA or is_transient(error):
        _refresh_metadata(admin, topic, error.str())
    return KafkaException(error)


def _refresh_metadata(admin: Any, topic: str, reason: str) -> KafkaError | None:
    """The admin client keeps asking the leader it has cached — one that died, or one the
    cluster has moved past — and has no fetcher whose errors would make it refresh its metadata
    by itself. Refresh it, so the retry asks the new leader. In tests/integration/test_broker_loss.py
    the restores after a broker kill took 10-104 s before (each unanswered ask cost the whole
    timeout, and the next went to the same dead leader); with the refresh and a 4 s timeout, at
    most 5.7 s. Returns the topic's error in the fresh metadata, if any."""
    log.warning("ListOffsets for %s: %s; asking again with fresh metadata", topic, reason)
    return refresh_leaders(admin, topic)


def refresh_leaders(admin: Any, topic: str) -> KafkaError | None:
    """Bring the client's knowledge of the topic's leaders up to date; returns the topic's error
    in the fresh metadata, if any. Also before a first ask: a worker's reload after a broker was
    lost sent its first ListOffsets to the leader it had cached at start, long dead or moved, and
    waited out LIST_OFFSETS_TIMEOUT_S before the refresh that let the next ask through: 4-6 s of
    every such reload in tests/integration/test_broker_loss.py. A refresh that fails changes
    nothing: the asks that follow retry as before."""
    try:
        described = admin.list_topics(topic, timeout=LIST_OFFSETS_TIMEOUT_S).topics.get(topic)
    except KafkaException as refresh_failure:  # the cluster is still away: the retry will tell
        log.warning("metadata refresh for %s failed: %s", topic, refresh_failure.args[0])
        return None
    return None if described is None else described.error


def high_watermarks(
    admin: Any,
    topic: str,
    partitions: Iterable[int],
    *,
    budget_s: float = TRANSIENT_BUDGET_S_DEFAULT,
    renew: Callable[[], Any] | None = None,
) -> dict[int, int]:
    return end_offsets(
        admin, topic, partitions, isolation=IsolationLevel.READ_UNCOMMITTED, budget_s=budget_s, renew=renew
    )


def last_stable_offsets(
    admin: Any,
    topic: str,
    partitions: Iterable[int],
    *,
    budget_s: float = TRANSIENT_BUDGET_S_DEFAULT,
    renew: Callable[[], Any] | None = None,
) -> dict[int, int]:
    return end_offsets(
        admin, topic, partitions, isolation=IsolationLevel.READ_COMMITTED, budget_s=budget_s, renew=renew
    )
