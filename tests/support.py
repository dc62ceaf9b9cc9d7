"""Test helpers that read what the system wrote to Kafka (the readers themselves live in
bench/topics.py, which the benchmarks share: tests may import bench, never the other way),
and the ledger loop run in this process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

from bench.topics import read_decoded, read_topic
from foundation.settings import Settings
from ledger.events import CommandResult
from streams.processor import LedgerProcessor

__all__ = ["outcome", "read_decoded", "read_topic", "run_cli", "running_processor"]

PROCESSOR_READY_TIMEOUT_S = 60
PROCESSOR_STOP_TIMEOUT_S = 30
CLI_TIMEOUT_S = 120.0


def run_cli(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m streamwallet.cli ARGS` as an operator runs it, with these settings' environment."""
    return subprocess.run(
        [sys.executable, "-m", "streamwallet.cli", *args],
        env={**os.environ, **settings.environment()},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


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
