"""Where a worker's turn goes during a measured run: the means of the three phases of its
committed transactions (decide, send, commit: `streamwallet_worker_transaction_<phase>_seconds`,
see streams/processor.py), read from each worker's /metrics before and after the run.

decide is the batch taken to its records produced (the worker's CPU); send is the records
flushed and the offsets' call waited for (the brokers' round trips); commit is EndTxn. A turn's
wait that deciding the next batch could hide is its send (bench/README.md, "Where a worker's
turn goes")."""

from __future__ import annotations

import dataclasses
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from streams.telemetry import TURN_PHASES

PHASES = TURN_PHASES  # the worker's own list: a phase it adds is read here too

SCRAPE_TIMEOUT_S = 10.0


class TurnsUnread(Exception):
    """A worker's turn metrics could not be read: the run reports no split rather than a wrong one."""


@dataclasses.dataclass(frozen=True)
class TurnTotals:
    """Per phase, the seconds summed and the transactions counted, as a worker exposes them."""

    seconds: dict[str, float]
    transactions: dict[str, float]


@dataclasses.dataclass(frozen=True)
class TurnSplit:
    transactions: int
    mean_ms: dict[str, float]  # per phase, per committed transaction

    def summary(self) -> dict[str, object]:
        return {
            "transactions": self.transactions,
            "mean_ms": {phase: round(ms, 3) for phase, ms in self.mean_ms.items()},
        }


def read_totals(url: str) -> TurnTotals:
    """The turn metrics of the worker serving `url` (its web root)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=SCRAPE_TIMEOUT_S) as response:
            text = response.read().decode()
    except OSError as error:
        raise TurnsUnread(f"{url}/metrics: {error}") from None
    seconds: dict[str, float] = {}
    transactions: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for phase in PHASES:
            if family.name != f"streamwallet_worker_transaction_{phase}_seconds":
                continue
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    seconds[phase] = sample.value
                elif sample.name.endswith("_count"):
                    transactions[phase] = sample.value
    missing = [phase for phase in PHASES if phase not in seconds or phase not in transactions]
    if missing:
        raise TurnsUnread(f"{url}/metrics has no turn metrics for {', '.join(missing)}")
    return TurnTotals(seconds, transactions)


def split(before: list[TurnTotals], after: list[TurnTotals]) -> TurnSplit:
    """The mean of each phase over the transactions the workers committed between the two reads."""
    if len(before) != len(after):
        raise ValueError(f"{len(before)} workers read before the run, {len(after)} after")
    transactions = sum(b.transactions["commit"] for b in after) - sum(a.transactions["commit"] for a in before)
    if transactions <= 0:
        raise TurnsUnread("no transaction committed during the run")
    mean_ms = {
        phase: (sum(b.seconds[phase] for b in after) - sum(a.seconds[phase] for a in before)) / transactions * 1000
        for phase in PHASES
    }
    return TurnSplit(transactions=int(transactions), mean_ms=mean_ms)
