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
    create_topics(settings)
    try:
        yield
    finally:
        delete_topics(settings)


def create_topics(settings: Settings) -> None:
    """The topology's topics, for a run that deletes them itself (`delete_prefixed`)."""
    ensure_topics(kafka_config(settings), settings.topology())


def delete_topics(settings: Settings) -> None:
    _delete(AdminClient(kafka_config(settings)), [spec.name for spec in settings.topology().all()])


def delete_prefixed(bootstrap_servers: str, prefix: str) -> None:
    """Every topic whose name starts with `prefix` and a separator: a run's topics named by
    another tool (Faust names its changelogs and internal topics after its app id)."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    listed = admin.list_topics(timeout=DELETE_TIMEOUT_S).topics
    _delete(admin, sorted(name for name in listed if name.startswith((f"{prefix}.", f"{prefix}-"))))


def _delete(admin: AdminClient, names: list[str]) -> None:
    """Deleted, or logged: a failed deletion must not hide the run's own error."""
    if not names:
        return
    futures = admin.delete_topics(names, operation_timeout=DELETE_TIMEOUT_S, request_timeout=DELETE_TIMEOUT_S)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                log.warning("the run's topic %s was not deleted: %s", name, error)
