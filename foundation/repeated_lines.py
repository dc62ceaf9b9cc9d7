"""librdkafka's bursts of identical log lines, collapsed to the first line and a count.

A client retrying a refused request logs each retry: an aborted transaction's producer logged
the same GETPID failure 54 times in one millisecond while a broker was down
(test_broker_loss). `RepeatedLines` is a filter for the logger librdkafka's lines go to
(`foundation.clients.LIBRDKAFKA_LOGGER`): a line of one client identical to the one it said
last, within `window_s` of the time it said it, is counted instead of written; the counts
are said, each as a line of its own, just before the next line that passes (of any client).
A burst at the very end of a run stays unsaid until another line comes.

confluent-kafka hands each librdkafka line to the logger as ("%s [%s] %s", facility, client
name, text); lines of any other shape pass untouched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

LIBRDKAFKA_FORMAT = "%s [%s] %s"
LIBRDKAFKA_ARGUMENTS = 3


class RepeatedLines(logging.Filter):
    def __init__(self, *, window_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()  # every client's polling thread logs through this filter
        # Per client: its last line said (facility, text), when, and the repeats not said yet.
        self._last: dict[str, _Said] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg != LIBRDKAFKA_FORMAT or not isinstance(args, tuple) or len(args) != LIBRDKAFKA_ARGUMENTS:
            return True
        facility, client, text = (str(arg) for arg in args)
        now_s = self._clock()
        with self._lock:
            last = self._last.get(client)
            if last is not None and last.line == (facility, text) and now_s - last.said_s <= self._window_s:
                last.repeats += 1
                return False
            counted: list[tuple[str, tuple[str, str], int]] = []
            for known in list(self._last):
                said = self._last[known]
                if said.repeats:
                    counted.append((known, said.line, said.repeats))
                    said.repeats = 0
                elif now_s - said.said_s > self._window_s:
                    del self._last[known]  # nothing left to count: a replaced client is not kept for good
            self._last[client] = _Said(line=(facility, text), said_s=now_s)
        for counted_client, (counted_facility, counted_text), repeats in counted:
            _say(
                record,
                "%s [%s] %s (repeated %d more %s)",
                (counted_facility, counted_client, counted_text, repeats, "time" if repeats == 1 else "times"),
            )
        return True


class _Said:
    __slots__ = ("line", "repeats", "said_s")

    def __init__(self, *, line: tuple[str, str], said_s: float) -> None:
        self.line = line
        self.said_s = said_s
        self.repeats = 0


def _say(beside: logging.LogRecord, message: str, args: tuple[object, ...]) -> None:
    """A record of its own, at `beside`'s logger and level, to the handlers `beside` reaches
    (its logger's, then its ancestors' while they propagate, as Logger.callHandlers walks
    them): written just before `beside`, which the filter is about to let through."""
    said = logging.LogRecord(beside.name, beside.levelno, beside.pathname, beside.lineno, message, args, None)
    logger: logging.Logger | None = logging.getLogger(beside.name)
    while logger is not None:
        for handler in logger.handlers:
            if said.levelno >= handler.level:
                handler.handle(said)
        logger = logger.parent if logger.propagate else None
