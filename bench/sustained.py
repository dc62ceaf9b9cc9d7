"""Sustained throughput: per workload, the highest offered rate whose p99 stays within a
bound for a whole open-loop run (issue 15: p99 <= 250 ms for 60 s).

    python -m bench.sustained [--scenarios same,cross,batch3] [--workers 1,2]
                              [--seconds 60] [--p99-ms 250] [--probes 6] [--resolution 0.1]
    python -m bench.sustained --quick      a smoke run with a tiny load

For each workload and worker count: the closed-loop peak (bench/ledger.py's setup and
scenarios), then open-loop runs of --seconds each, the offered rate bisected between the
highest rate that held and the lowest that did not (the first probe at half the peak,
the peak the ceiling) until they are within --resolution of each other or --probes runs
are spent. Latency is measured from each command's intended send time, so a system that
falls behind shows it in its p99 (bench/harness.py). The rate reported held in a run of
its own; the rate above it, which did not, is printed beside it.

Every run fails loudly, as bench.ledger's do: a missing result, a rejected command or a
dead process ends the benchmark without figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.figures import MissingResults, RejectedCommands, Run, format_ms, require_accepted
from bench.ledger import FULL, OPEN_LOOP_COMMANDS_MIN, QUICK, RESULTS_DIR, loaded_stack
from bench.processes import ProcessGone
from deploy.local import kafka
from foundation.settings import Settings

SCENARIOS = ("same", "cross", "batch3")
FIRST_PROBE_OF_PEAK = 0.5  # open-loop rates here have held about half the closed-loop peak
RATE_FLOOR_PER_S = 10.0  # below this a workload is not sustained at all


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    offered_per_s: float
    run: Run
    held: bool


def next_rate(probes: Sequence[Probe], *, ceiling: float, resolution: float, probes_max: int) -> float | None:
    """The next rate to offer, or None when the search is over: halfway between the
    highest rate that held and the lowest that did not (the ceiling while none failed)."""
    if not probes:
        return ceiling * FIRST_PROBE_OF_PEAK
    held = max((probe.offered_per_s for probe in probes if probe.held), default=0.0)
    broke = min((probe.offered_per_s for probe in probes if not probe.held), default=ceiling)
    if held >= ceiling or len(probes) >= probes_max or broke <= RATE_FLOOR_PER_S:
        return None
    if held > 0 and broke - held <= resolution * held:
        return None
    return (held + broke) / 2


@dataclasses.dataclass
class Sustained:
    scenario: str
    workers: int
    peak: Run
    probes: list[Probe]

    @property
    def held(self) -> Probe | None:
        return max((probe for probe in self.probes if probe.held), key=lambda p: p.offered_per_s, default=None)

    @property
    def broke(self) -> Probe | None:
        return min((probe for probe in self.probes if not probe.held), key=lambda p: p.offered_per_s, default=None)

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "workers": self.workers,
            "peak": self.peak.summary(),
            "sustained_per_s": None if self.held is None else self.held.offered_per_s,
            "probes": [
                {"offered_per_s": probe.offered_per_s, "held": probe.held, **probe.run.summary()}
                for probe in self.probes
            ],
        }


def measure(base: Settings, args: argparse.Namespace, *, scenario: str, workers: int, run_dir: Path) -> Sustained:
    scale = QUICK if args.quick else FULL
    name = f"{scenario}-{workers}w"
    with loaded_stack(
        base, scenario=scenario, workers=workers, scale=scale, run_dir=run_dir, module="streamwallet.cli", name=name
    ) as ready:
        driver = ready.driver
        peak = driver.run(f"{name} peak", ready.commands(scenario, scale.peak_commands), processes=ready.processes)
        require_accepted(peak)
        print(f"{name}: closed-loop peak {peak.throughput:,.0f}/s", flush=True)
        probes: list[Probe] = []
        search = {"ceiling": peak.throughput, "resolution": args.resolution, "probes_max": args.probes}
        while (rate := next_rate(probes, **search)) is not None:
            time.sleep(scale.settle_seconds)  # the last run's settles and refunds land first
            workload = ready.commands(scenario, max(OPEN_LOOP_COMMANDS_MIN, int(rate * args.seconds)))
            run = driver.run(f"{name} at {rate:,.0f}/s", workload, rate_per_s=rate, processes=ready.processes)
            require_accepted(run)
            p99 = run.percentile("p99")
            probes.append(Probe(offered_per_s=rate, run=run, held=p99 is not None and p99 <= args.p99_ms))
            print(
                f"  offered {rate:,.0f}/s for {args.seconds:g} s: delivered {run.throughput:,.0f}/s, "
                f"p99 {format_ms(p99)} ms (n={len(run.latencies_ms):,}): "
                + ("held" if probes[-1].held else "did not hold"),
                flush=True,
            )
        return Sustained(scenario=scenario, workers=workers, peak=peak, probes=probes)


def table(results: Sequence[Sustained], *, seconds: float, p99_ms: float) -> str:
    lines = [
        f"sustained: the highest offered rate whose p99 stayed <= {p99_ms:g} ms for {seconds:g} s "
        "(latency from the intended send time)",
        f"{'workload':<10}{'wk':>3}{'peak/s':>10}{'sustained/s':>13}{'p50 / p99 / p99.9 ms':>26}"
        f"{'samples':>10}   next rate up: p99 ms",
    ]
    for result in results:
        held, broke = result.held, result.broke
        if held is None:
            cells = f"{'none':>13}{'':>26}{'':>10}"
        else:
            figures = " / ".join(format_ms(held.run.percentile(name)) for name in ("p50", "p99", "p99.9"))
            cells = f"{held.offered_per_s:>13,.0f}{figures:>26}{len(held.run.latencies_ms):>10,}"
        above = (
            "none failed"
            if broke is None
            else f"{broke.offered_per_s:,.0f}/s: {format_ms(broke.run.percentile('p99'))}"
        )
        lines.append(f"{result.scenario:<10}{result.workers:>3}{result.peak.throughput:>10,.0f}{cells}   {above}")
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny load: checks the harness, not the system")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--seconds", type=float, help="length of each open-loop run (default 60; 2 with --quick)")
    parser.add_argument("--p99-ms", type=float, default=250.0, help="the p99 a rate must keep to hold")
    parser.add_argument("--probes", type=int, help="open-loop runs per workload at most (default 6; 2 with --quick)")
    parser.add_argument("--resolution", type=float, default=0.1, help="stop when the bounds are this close")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (2.0 if args.quick else 60.0)
    args.probes = args.probes or (2 if args.quick else 6)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    base = Settings.from_environment()
    if "STREAMWALLET_BOOTSTRAP_SERVERS" not in os.environ:
        kafka.start(name="dev", base_port=int(base.bootstrap_servers.rsplit(":", 1)[1]))
    base = dataclasses.replace(base, worker_web_port=base.worker_web_port + 1000)
    run_dir = Path(tempfile.mkdtemp(prefix="streamwallet-sustained-"))
    results: list[Sustained] = []
    try:
        for scenario in args.scenarios.split(","):
            for workers in (int(count) for count in args.workers.split(",")):
                results.append(measure(base, args, scenario=scenario, workers=workers, run_dir=run_dir))
    except (MissingResults, RejectedCommands, ProcessGone) as failure:
        print(f"\nbench.sustained FAILED, no figures: {type(failure).__name__}: {failure}", file=sys.stderr)
        print(f"(worker logs under {run_dir})", file=sys.stderr)
        return 1
    print()
    print(table(results, seconds=args.seconds, p99_ms=args.p99_ms))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sustained-{time.strftime('%Y%m%dT%H%M%S')}.json"
    report = {
        "configuration": {"seconds": args.seconds, "p99_ms": args.p99_ms, "probes": args.probes, "quick": args.quick},
        "results": [result.summary() for result in results],
    }
    path.write_text(json.dumps(report, indent=1))
    print(f"\nevery figure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
