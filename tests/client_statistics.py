"""librdkafka's statistics of a client under test: the reports it hands its stats_cb, and
how many requests of a kind it had sent by each (what the broker pays for, per request)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

REPORT_WAIT_S_MAX = 30.0


class ClientStatistics:
    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self.reports: list[dict[str, Any]] = []

    def options(self) -> dict[str, Any]:
        """The client options that deliver the reports here (on the thread that polls it)."""
        return {"statistics.interval.ms": self.interval_ms, "stats_cb": self._received}

    def _received(self, text: str) -> None:
        self.reports.append(json.loads(text))

    def next_report(self, *, after: int, serve: Callable[[], None]) -> int:
        """The index of the latest report once there is one past index `after` (-1: any),
        calling `serve` while none is (what polls the client, or a short sleep)."""
        deadline_s = time.monotonic() + REPORT_WAIT_S_MAX
        while len(self.reports) <= after + 1 and time.monotonic() < deadline_s:
            serve()
        assert len(self.reports) > after + 1, f"librdkafka reported no statistics within {REPORT_WAIT_S_MAX:.0f} s"
        return len(self.reports) - 1

    def requests(self, index: int, kind: str) -> tuple[float, int]:
        """(when, in seconds of librdkafka's clock; requests of `kind` sent by then, over
        every broker) for report `index`. Kinds are librdkafka's names: Produce, Fetch."""
        report = self.reports[index]
        sent = sum(broker["req"].get(kind, 0) for broker in report["brokers"].values())
        return report["ts"] / 1e6, sent
