"""librdkafka repeats itself in bursts (an aborted transaction's producer logged the same
GETPID retry 54 times in one millisecond during test_broker_loss): a burst of identical lines
of one client becomes its first line and a count, said with the next line that passes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from foundation.clients import LIBRDKAFKA_LOGGER
from foundation.repeated_lines import RepeatedLines

GETPID = "Failed to acquire transactional PID from broker TxnCoordinator/2: Broker: concurrent transactions"


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, Kept, Clock]]:
    logger = logging.getLogger(f"test-repeated-{threading.get_ident()}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    clock = Clock()
    kept = Kept()
    logger.addHandler(kept)
    logger.addFilter(RepeatedLines(window_s=1.0, clock=clock))
    yield logger, kept, clock
    logger.handlers.clear()
    logger.filters.clear()


def librdkafka_line(logger: logging.Logger, facility: str, client: str, text: str) -> None:
    """As confluent-kafka hands librdkafka's lines to a Python logger."""
    logger.log(logging.WARNING, "%s [%s] %s", facility, client, text)


def test_a_burst_of_one_clients_identical_lines_is_its_first_line_and_a_count(
    logged: tuple[logging.Logger, Kept, Clock],
) -> None:
    logger, kept, _ = logged
    for _ in range(54):
        librdkafka_line(logger, "GETPID", "worker-1-ledger#producer-3", GETPID)
    librdkafka_line(logger, "FAIL", "worker-1-ledger#consumer-6", "Connect failed: Connection refused")
    assert kept.lines == [
        f"GETPID [worker-1-ledger#producer-3] {GETPID}",
        f"GETPID [worker-1-ledger#producer-3] {GETPID} (repeated 53 more times)",
        "FAIL [worker-1-ledger#consumer-6] Connect failed: Connection refused",
    ]


def test_the_same_line_after_the_window_or_from_another_client_is_said_again(
    logged: tuple[logging.Logger, Kept, Clock],
) -> None:
    logger, kept, clock = logged
    librdkafka_line(logger, "GETPID", "worker-1-ledger#producer-3", GETPID)
    librdkafka_line(logger, "GETPID", "worker-2-ledger#producer-3", GETPID)  # another client: news
    clock.now_s += 0.5
    librdkafka_line(logger, "GETPID", "worker-2-ledger#producer-3", GETPID)  # within the window: counted
    clock.now_s += 1.5
    librdkafka_line(logger, "GETPID", "worker-2-ledger#producer-3", GETPID)  # past it: said again
    assert kept.lines == [
        f"GETPID [worker-1-ledger#producer-3] {GETPID}",
        f"GETPID [worker-2-ledger#producer-3] {GETPID}",
        f"GETPID [worker-2-ledger#producer-3] {GETPID} (repeated 1 more time)",
        f"GETPID [worker-2-ledger#producer-3] {GETPID}",
    ]


def test_lines_that_are_not_librdkafkas_pass_untouched(logged: tuple[logging.Logger, Kept, Clock]) -> None:
    logger, kept, _ = logged
    for _ in range(3):
        logger.warning("transaction aborted (%s); the batch will be consumed again", "TIMED_OUT")
        logger.warning("plain text, no arguments")
    assert len(kept.lines) == 6


def test_the_librdkafka_logger_of_every_client_collapses_repeats() -> None:
    assert any(isinstance(found, RepeatedLines) for found in LIBRDKAFKA_LOGGER.filters)
