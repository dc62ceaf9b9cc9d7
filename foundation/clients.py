"""The librdkafka configuration every Kafka client of streamwallet starts from.

One place sets what all clients share: where the brokers are and how to reach them.
Each client adds what its role needs (transactions, isolation, partitioner) on top.
"""

from __future__ import annotations

from typing import Any

from foundation.settings import Settings


def kafka_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The common configuration, with `overrides` (librdkafka names, dots as in
    `{"isolation.level": ...}`) applied last."""
    config: dict[str, Any] = {"bootstrap.servers": settings.bootstrap_servers}
    config.update(overrides)
    return config
