"""`streamwallet load` and Ctrl-C: every line sent gets its outcome, whenever the signal comes."""

from __future__ import annotations

import io
import json
import os
import signal
from typing import cast

from gateway.client import LedgerClient
from streamwallet.load import InvalidLine, Loader
from streamwallet.load_progress import Progress


class _InterruptedWhileWritten(io.StringIO):
    """A results file whose `at`-th outcome is written while a real SIGINT arrives."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        if self.writes == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return super().write(text)


def test_ctrl_c_while_an_outcome_is_written_loses_no_line() -> None:
    """Defect (a fresh-clone CI run of test_operator_cli's Ctrl-C test: line 104 of 153 had no
    outcome): the signal raised KeyboardInterrupt wherever the loader was, and when that was
    between taking a line off its queue and writing the line's outcome, the line was lost while
    the lines after it were recorded."""
    results = _InterruptedWhileWritten(at=5)
    # Lines the loader answers itself (INVALID_LINE): no command is sent, so no client is used.
    lines = iter([InvalidLine(number, "not a command") for number in range(1, 101)])
    loader = Loader(
        cast(LedgerClient, None),
        window=3,
        timeout_s=1.0,
        results=results,
        progress=Progress(stream=io.StringIO(), total_bytes=1, position=lambda: 0),
        label="lines.jsonl",
    )
    previous = signal.getsignal(signal.SIGINT)
    summary = loader.run(lines)
    numbers = [json.loads(record)["line"] for record in results.getvalue().splitlines()]
    assert numbers == list(range(1, len(numbers) + 1)), f"a line without its outcome: {numbers}"
    assert 5 <= len(numbers) < 100
    assert summary.interrupted_at_line == len(numbers) + 1
    assert signal.getsignal(signal.SIGINT) is previous, "the loader left its Ctrl-C handler behind"
