"""A benchmark run's own topics: created at its start, deleted at its end.

Each run writes topics of its own (a fresh prefix, so that no run reads another's records).
Left behind, they filled this machine's disk: 49 GB of earlier runs' topics stopped the broker
in the middle of a sustained search, and the search reported nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from foundation.clients import kafka_config
from foundation.settings import Settings
from topologies.admin import ensure_topics

log = logging.getLogger(__name__)

DELETE_TIMEOUT_S = 60.0


@contextlib.contextmanager
def run_topics(settings: Settings) -> Iterator[None]:
    """The topology's topics for the run, deleted when it ends however it ends (a failed
    deletion is logged: it must not hide the run's own error)."""
    ensure_topics(kafka_config(settings), settings.topology())
    try:
        yield
    finally:
        delete_topics(settings)


def delete_topics(settings: Settings) -> None:
    admin = AdminClient(kafka_config(settings))
    names = [spec.name for spec in settings.topology().all()]
    futures = admin.delete_topics(names, operation_timeout=DELETE_TIMEOUT_S, request_timeout=DELETE_TIMEOUT_S)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                log.warning("the run's topic %s was not deleted: %s", name, error)
