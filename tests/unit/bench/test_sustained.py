"""The sustained-rate search of bench/sustained.py: a pure bisection, tested against
systems whose breaking point is known."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.figures import Run
from bench.sustained import FIRST_PROBE_OF_PEAK, RATE_FLOOR_PER_S, Probe, next_rate

RUN = Run(name="probe", commands=1, seconds=1.0, latencies_ms=[1.0])


def search(breaks_at: float, *, ceiling: float, resolution: float = 0.1, probes_max: int = 50) -> list[Probe]:
    """Every probe the search makes of a system that holds any rate below `breaks_at`."""
    probes: list[Probe] = []
    while (rate := next_rate(probes, ceiling=ceiling, resolution=resolution, probes_max=probes_max)) is not None:
        probes.append(Probe(offered_per_s=rate, run=RUN, held=rate < breaks_at))
    return probes


def test_the_first_probe_is_half_the_peak() -> None:
    assert next_rate([], ceiling=8000.0, resolution=0.1, probes_max=6) == 8000.0 * FIRST_PROBE_OF_PEAK


@given(
    breaks_at=st.floats(min_value=RATE_FLOOR_PER_S * 2, max_value=20_000.0),
    ceiling=st.floats(min_value=100.0, max_value=20_000.0),
)
def test_the_rate_found_held_and_the_one_above_it_is_within_the_resolution(breaks_at: float, ceiling: float) -> None:
    probes = search(breaks_at, ceiling=ceiling)
    held = [probe.offered_per_s for probe in probes if probe.held]
    broke = [probe.offered_per_s for probe in probes if not probe.held]
    assert all(rate < breaks_at for rate in held) and all(rate >= breaks_at for rate in broke)
    # The bounds the search ends between: the highest rate that held, and the lowest that did
    # not, or the closed-loop peak (the ceiling) when none failed.
    upper = min(broke, default=ceiling)
    assert held and upper - max(held) <= 0.1 * max(held)


def test_a_workload_that_never_holds_is_reported_as_none_not_as_the_floor() -> None:
    probes = search(0.0, ceiling=5000.0)
    assert probes and not any(probe.held for probe in probes)
    assert min(probe.offered_per_s for probe in probes) <= RATE_FLOOR_PER_S


@pytest.mark.parametrize("probes_max", [1, 2, 6])
def test_the_search_spends_at_most_its_probes(probes_max: int) -> None:
    assert len(search(3333.0, ceiling=10_000.0, resolution=0.0001, probes_max=probes_max)) == probes_max
