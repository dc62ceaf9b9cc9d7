"""What a benchmark run's samples can say, and nothing more. Pure: no Kafka, no clock.

* **Counting.** A run is the commands that were sent. Every one must have its result or
  the run fails with `MissingResults`: a figure over whatever happened to arrive would
  flatter a system that loses work, and a count of what was sent would invent results.
  Rejected commands in a measured run fail it too (`RejectedCommands`): it would have
  measured the rejection path.
* **Percentiles** are exact order statistics of the sorted samples, printed only where the
  sample count supports them: at least `SAMPLES_BEYOND_PERCENTILE_MIN` samples at or beyond
  the percentile, so p50 needs 20 samples, p90 100, p99 1,000 and p99.9 10,000. Otherwise
  the figure is None in JSON and "—" in a table, always beside the sample count.
* **CPU** is user + system seconds per process (broker, each worker, the load generator)
  while the run lasted, reported per 1,000 commands; the system under test is every
  process but the generator.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from fractions import Fraction
from typing import Any, TypeVar

SAMPLES_BEYOND_PERCENTILE_MIN = 10
PERCENTILES: dict[str, Fraction] = {
    "p50": Fraction(1, 2),
    "p90": Fraction(9, 10),
    "p99": Fraction(99, 100),
    "p99.9": Fraction(999, 1000),
}
GENERATOR = "generator"  # the load generator's process: not part of the system under test
MISSING_EXAMPLES_MAX = 3
UNSUPPORTED = "—"

Key = TypeVar("Key", bound=Hashable)


class MissingResults(Exception):
    """A run whose results did not all arrive: it has no figures."""

    def __init__(self, message: str, *, missing: int = 0, sent: int = 0) -> None:
        super().__init__(message)
        self.missing = missing
        self.sent = sent


class RejectedCommands(Exception):
    """A measured run in which the system rejected commands it should have accepted."""


def samples_required(name: str) -> int:
    """The fewest samples for which percentile `name` has SAMPLES_BEYOND_PERCENTILE_MIN at or beyond it."""
    return math.ceil(SAMPLES_BEYOND_PERCENTILE_MIN / (1 - PERCENTILES[name]))


def _order_statistic(ordered: Sequence[float], name: str) -> float | None:
    if len(ordered) < samples_required(name):
        return None
    return ordered[int(PERCENTILES[name] * len(ordered))]


def percentile(samples: Sequence[float], name: str) -> float | None:
    """Percentile `name` ("p50", "p90", "p99", "p99.9"), or None when the samples cannot support it."""
    return _order_statistic(sorted(samples), name)


def percentiles(samples: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(samples)
    return {name: _order_statistic(ordered, name) for name in PERCENTILES}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def latency_summary(samples: Sequence[float]) -> dict[str, Any]:
    """The sample count, every percentile (None where unsupported) and the maximum, in ms."""
    figures = {f"{name.replace('.', '')}_ms": _rounded(value) for name, value in percentiles(samples).items()}
    return {"samples": len(samples), **figures, "max_ms": _rounded(max(samples, default=None))}


def format_ms(value: float | None) -> str:
    return UNSUPPORTED if value is None else f"{value:.1f}"


def describe_latency(samples: Sequence[float], names: Sequence[str] = ("p50", "p99", "p99.9")) -> str:
    """e.g. "p50 12.3 · p99 45.6 · p99.9 — ms (n=6,000)"."""
    figures = percentiles(samples)
    return " · ".join(f"{name} {format_ms(figures[name])}" for name in names) + f" ms (n={len(samples):,})"


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    name: str
    commands: int
    seconds: float
    latencies_ms: list[float]
    rejected: int = 0
    rejected_codes: dict[str, int] = dataclasses.field(default_factory=dict)  # error code -> how many
    cpu_s: dict[str, float] = dataclasses.field(default_factory=dict)  # process -> user+system s in the run

    @property
    def throughput(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0

    def percentile(self, name: str) -> float | None:
        return percentile(self.latencies_ms, name)

    def cpu_s_per_1000(self) -> dict[str, float]:
        return {process: seconds / self.commands * 1000 for process, seconds in self.cpu_s.items()}

    def system_under_test_cpu_s_per_1000(self) -> float | None:
        """CPU of every measured process but the load generator, per 1,000 commands."""
        measured = [value for process, value in self.cpu_s_per_1000().items() if process != GENERATOR]
        return sum(measured) if measured else None

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "commands": self.commands,
            "seconds": round(self.seconds, 3),
            "throughput_per_s": round(self.throughput, 1),
            **latency_summary(self.latencies_ms),
            "rejected": self.rejected,
            "cpu_s": {process: round(seconds, 3) for process, seconds in self.cpu_s.items()},
            "cpu_s_per_1000_commands": {process: round(value, 4) for process, value in self.cpu_s_per_1000().items()},
        }


def completed_run(
    name: str,
    *,
    sent: Mapping[Key, float],
    received: Mapping[Key, float],
    started: float,
    waited_s: float | None = None,
    rejected: int = 0,
    rejected_codes: Mapping[str, int] | None = None,
) -> Run:
    """The run of the commands in `sent` (key -> send time), each answered at `received[key]`
    (other keys in `received`, such as a readiness probe, are not the run's). Fails with
    MissingResults unless every command sent has its result (`waited_s`: how long the
    caller waited for them, for the message)."""
    if not sent:
        raise MissingResults(f"{name}: nothing was sent")
    missing = [key for key in sent if key not in received]
    if missing:
        examples = ", ".join(repr(key) for key in missing[:MISSING_EXAMPLES_MAX])
        raise MissingResults(
            f"{name}: {len(missing)} of {len(sent)} results missing"
            + ("" if waited_s is None else f" after waiting {waited_s:.0f}s")
            + f" (e.g. {examples}); "
            "a run with missing results has no figures",
            missing=len(missing),
            sent=len(sent),
        )
    return Run(
        name=name,
        commands=len(sent),
        seconds=max(received[key] for key in sent) - started,
        latencies_ms=[(received[key] - at) * 1000 for key, at in sent.items()],
        rejected=rejected,
        rejected_codes=dict(rejected_codes or {}),
    )


def require_accepted(run: Run) -> None:
    if run.rejected:
        raise RejectedCommands(
            f"{run.name}: {run.rejected} of {run.commands} commands were rejected"
            + (
                f" ({', '.join(f'{code} {count}' for code, count in sorted(run.rejected_codes.items()))})"
                if run.rejected_codes
                else ""
            )
            + "; "
            "a benchmark workload must be accepted in full, or it measures the rejection path"
        )
