"""The progress of a load on stderr: a bar redrawn in place on a terminal, nothing but the
per-line messages otherwise (logs and pipes get no control characters)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

REDRAW_INTERVAL_S = 0.2
BAR_WIDTH_CHARACTERS = 30
CLEAR_LINE = "\r\x1b[K"


class Progress:
    def __init__(self, *, stream: IO[str], total_bytes: int, position: Callable[[], int]) -> None:
        self.stream = stream
        self.total_bytes = max(total_bytes, 1)
        self.position = position
        self.on_terminal = stream.isatty()
        self.started_s = time.monotonic()
        self._drawn_s = 0.0
        self._drawn = False

    def update(self, *, lines: int, not_accepted: int) -> None:
        now = time.monotonic()
        if not self.on_terminal or now - self._drawn_s < REDRAW_INTERVAL_S:
            return
        self._drawn_s = now
        self._draw(lines, not_accepted)

    def message(self, text: str) -> None:
        """A line of its own (a per-line error), above the bar."""
        if self.on_terminal and self._drawn:
            self.stream.write(CLEAR_LINE)
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, *, lines: int, not_accepted: int) -> None:
        if self.on_terminal:
            self._draw(lines, not_accepted)
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, lines: int, not_accepted: int) -> None:
        fraction = min(self.position() / self.total_bytes, 1.0)
        filled = int(fraction * BAR_WIDTH_CHARACTERS)
        elapsed_s = max(time.monotonic() - self.started_s, 1e-9)
        bar = "#" * filled + "." * (BAR_WIDTH_CHARACTERS - filled)
        rate = lines / elapsed_s
        self.stream.write(
            f"{CLEAR_LINE}[{bar}] {fraction:4.0%}  {lines:,} lines  {rate:,.0f}/s  {not_accepted:,} not accepted"
        )
        self.stream.flush()
        self._drawn = True
