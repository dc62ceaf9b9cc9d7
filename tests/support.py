"""Test helpers that read what the system wrote to Kafka (the readers themselves live in
bench/topics.py, which the benchmarks share: tests may import bench, never the other way),
and the ledger loop run in this process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from bench.topics import read_decoded, read_topic
from foundation.settings import Settings
from ledger.events import CommandResult
from streams.processor import LedgerProcessor

__all__ = ["outcome", "read_decoded", "read_topic", "running_processor"]

PROCESSOR_READY_TIMEOUT_S = 60
PROCESSOR_STOP_TIMEOUT_S = 30


@contextlib.contextmanager
def running_processor(settings: Settings) -> Iterator[LedgerProcessor]:
    """The ledger loop in this process, on a thread, until the block ends (the e2e tests
    run it as a separate process)."""
    processor = LedgerProcessor(settings)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,))
    thread.start()
    try:
        if not processor.ready.wait(PROCESSOR_READY_TIMEOUT_S):
            raise TimeoutError("the processor did not become ready")
        yield processor
    finally:
        stop.set()
        thread.join(PROCESSOR_STOP_TIMEOUT_S)


def outcome(result: CommandResult) -> tuple[str, str | None, bool]:
    """(status, code, replayed) of a result, as plain values for comparisons."""
    return result.status.value, None if result.code is None else result.code.value, result.replayed
