"""Test helpers that read what the system wrote to Kafka (the readers themselves live in
bench/topics.py, which the benchmarks share: tests may import bench, never the other way)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from bench.topics import read_decoded, read_topic
from foundation.settings import Settings
from ledger.events import CommandResult
from streams.processor import LedgerProcessor

__all__ = ["ledger_loop", "outcome", "read_decoded", "read_topic"]
WORKER_READY_TIMEOUT_S = 60.0
WORKER_STOP_TIMEOUT_S = 30.0


@contextlib.contextmanager
def ledger_loop(settings: Settings) -> Iterator[LedgerProcessor]:
    """The ledger's transactional loop on a thread of this process, ready, stopped on exit
    (the end-to-end tests run the worker as a process of its own instead)."""
    processor = LedgerProcessor(settings)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,))
    thread.start()
    try:
        if not processor.ready.wait(WORKER_READY_TIMEOUT_S):
            raise TimeoutError(f"the ledger loop was not ready within {WORKER_READY_TIMEOUT_S}s")
        yield processor
    finally:
        stop.set()
        thread.join(WORKER_STOP_TIMEOUT_S)


def outcome(result: CommandResult) -> tuple[str, str | None, bool]:
    """(status, code, replayed) of a result, as plain values for comparisons."""
    return result.status.value, None if result.code is None else result.code.value, result.replayed
