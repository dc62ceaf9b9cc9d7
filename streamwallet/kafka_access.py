"""How the operator's commands reach Kafka: their client configuration, and a quick check
that the broker and the deployment's topics are there before anything is sent.

librdkafka prints its own log lines (`%6|…|FAIL|…`, `%3|…`) straight to stderr unless a
client is given a Python `logger`; every client made here is, so those lines go through
Python logging (shown at WARNING and above, formatted like the rest) and never reach the
operator's terminal raw. Clients made elsewhere from `foundation.clients.kafka_config`
(the `LedgerClient` of `submit` and `load`) do the same once that function sets it.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from foundation.clients import kafka_config
from foundation.settings import Settings
from streamwallet.exit_codes import CommandError
from topologies import TopicSpec

LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")
REACH_TIMEOUT_S = 5.0  # how long to wait for the broker's first answer


def operator_kafka_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The deployment's client configuration, librdkafka's logs routed to Python logging."""
    return kafka_config(settings, logger=LIBRDKAFKA_LOGGER, **overrides)


def require_topics(settings: Settings, *specs: TopicSpec) -> AdminClient:
    """An admin client of a broker that answers and has every topic of `specs`; else a
    CommandError (exit 2) that says which and what to do."""
    admin = AdminClient(operator_kafka_config(settings))
    try:
        topics = admin.list_topics(timeout=REACH_TIMEOUT_S).topics
    except KafkaException as exception:
        raise CommandError(
            f"cannot reach Kafka at {settings.bootstrap_servers} ({exception.args[0].str()}); "
            "is it running (streamwallet kafka status) and is STREAMWALLET_BOOTSTRAP_SERVERS right?"
        ) from None
    missing = [spec.name for spec in specs if spec.name not in topics]
    if missing:
        raise CommandError(
            f"Kafka at {settings.bootstrap_servers} has no topic {', '.join(missing)}: is "
            f"STREAMWALLET_TOPIC_PREFIX={settings.topic_prefix!r} right? (create them: streamwallet topics create)"
        )
    return admin
