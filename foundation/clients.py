"""The librdkafka configuration every Kafka client of streamwallet starts from.

One place sets what all clients share: where the brokers are and how to reach them
(PLAINTEXT, or SASL_SSL with the settings' user, password and CA file). Each client adds
what its role needs (transactions, isolation, partitioner) on top.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from foundation.repeated_lines import RepeatedLines
from foundation.settings import ENVIRONMENT_PREFIX, Settings

ACCESS_CHECK_TIMEOUT_S = 10.0
ACCESS_ATTEMPT_TIMEOUT_S = 1.0
REASONS_SHOWN_MAX = 4
LIBRDKAFKA_REPEATS_WINDOW_S = 1.0
LIBRDKAFKA_LOG_DEBUG = 7  # librdkafka logs a refused connection ("Disconnected ... APIVERSION_QUERY") at 7
_NOISE = re.compile(r"^FAIL \[[^]]*\] \[[^]]*\]: |\s*\(after \d+ms in state \w+\)")


class KafkaAccessError(RuntimeError):
    """The brokers could not be reached, or refused this client: the message says why."""


LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")
# A burst of one client's identical lines (a retry logged per attempt) is written once, with a count.
LIBRDKAFKA_LOGGER.addFilter(RepeatedLines(window_s=LIBRDKAFKA_REPEATS_WINDOW_S))


def kafka_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The common configuration, with `overrides` (librdkafka names, dots as in
    `{"isolation.level": ...}`) applied last."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        # librdkafka's own lines go through Python logging (its level and format, the process's
        # log file), not raw to stderr; they are delivered when the client is polled.
        "logger": LIBRDKAFKA_LOGGER,
    }
    if settings.kafka_security_protocol == "SASL_SSL":
        config.update(
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": settings.kafka_sasl_mechanism,
                "sasl.username": settings.kafka_username,
                "sasl.password": kafka_password(settings),
                # librdkafka's default, stated: the broker's certificate must name the host.
                "ssl.endpoint.identification.algorithm": "https",
            }
        )
        if settings.kafka_ca_file is not None:
            config["ssl.ca.location"] = str(settings.kafka_ca_file)
    config.update(overrides)
    return config


def kafka_password(settings: Settings) -> str:
    """The password from the settings, or read from the password file."""
    if settings.kafka_password_file is None:
        return settings.kafka_password
    try:
        return Path(settings.kafka_password_file).read_text().strip()
    except OSError as error:
        raise KafkaAccessError(
            f"{ENVIRONMENT_PREFIX}KAFKA_PASSWORD_FILE={settings.kafka_password_file} cannot be read: {error.strerror}"
        ) from None


def check_kafka_access(settings: Settings, *, timeout_s: float = ACCESS_CHECK_TIMEOUT_S) -> None:
    """Ask the brokers for metadata once, as these settings' user; raise KafkaAccessError
    saying what went wrong (authentication, TLS, protocol, no broker) instead of letting a
    client retry in silence."""
    reasons: list[str] = []
    log = logging.Logger("kafka-access-check", logging.DEBUG)
    log.addHandler(_Collect(reasons))
    admin = AdminClient(
        kafka_config(
            settings,
            error_cb=lambda error: reasons.append(_describe(error)),
            logger=log,
            log_level=LIBRDKAFKA_LOG_DEBUG,
        )
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=ACCESS_ATTEMPT_TIMEOUT_S)
            return
        except KafkaException as error:
            admin.poll(0.1)  # serve the queued error and log callbacks
            hint = _hint("\n".join(reasons))
            if hint is not None or time.monotonic() >= deadline:
                reasons.append(_describe(error.args[0]))
                raise KafkaAccessError(_explain(settings, reasons, hint)) from None


class _Collect(logging.Handler):
    """Keeps librdkafka's connection failures (its FAIL log lines), without their prefixes."""

    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("FAIL "):
            self.into.append(_NOISE.sub("", message))


def _describe(error: KafkaError) -> str:
    return _NOISE.sub("", f"{error.name()}: {error.str()}")


def _hint(text: str) -> str | None:
    """What to check, for the failures that retrying cannot cure; None for the others."""
    prefix = ENVIRONMENT_PREFIX
    if "_AUTHENTICATION" in text or "SASL" in text:
        return f"authentication failed: check {prefix}KAFKA_USERNAME, the password and {prefix}KAFKA_SASL_MECHANISM"
    if "certificate verify failed" in text:
        return f"TLS failed: the broker's certificate is not trusted; check {prefix}KAFKA_CA_FILE"
    if "SSL" in text:
        return f"the TLS handshake failed: does the listener use TLS? check {prefix}KAFKA_SECURITY_PROTOCOL"
    if "closed by peer" in text:
        return (
            "the broker closed the connection before answering: it expects another protocol "
            f"(TLS, SASL?); check {prefix}KAFKA_SECURITY_PROTOCOL"
        )
    return None


def _explain(settings: Settings, reasons: list[str], hint: str | None) -> str:
    where = f"Kafka at {settings.bootstrap_servers} ({settings.kafka_security_protocol}"
    if settings.kafka_security_protocol == "SASL_SSL":
        where += f", {settings.kafka_sasl_mechanism} as {settings.kafka_username!r}"
    where += ")"
    hint = hint or f"no broker answered: check {ENVIRONMENT_PREFIX}BOOTSTRAP_SERVERS and the network"
    unique = list(dict.fromkeys(reasons))
    return f"{where}: {hint}\n  " + "\n  ".join(unique[:REASONS_SHOWN_MAX])
