"""The load generator times runs with its garbage collector paused (bench/harness.py): a
full collection over a run's commands stalled it for up to half a second, and the results
it held back were timed as the system's latency."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bench.harness import collector_paused


@pytest.fixture
def collections_seen() -> Iterator[list[int]]:
    """The generation of every collection that starts while the test runs."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(record)
    try:
        yield seen
    finally:
        gc.callbacks.remove(record)


def make_cyclic_garbage(count: int) -> None:
    for _ in range(count):
        node: list[object] = []
        node.append(node)  # a cycle: only the collector frees it


def test_garbage_that_would_be_collected_is_not_while_paused(collections_seen: list[int]) -> None:
    make_cyclic_garbage(50_000)
    assert collections_seen, "the control: this much garbage makes the collector run"
    collections_seen.clear()
    with collector_paused():
        collections_seen.clear()  # its own collection, before the run starts
        make_cyclic_garbage(50_000)
        assert collections_seen == [] and not gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == 0  # as it was before the run


def test_a_collector_off_before_the_run_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_comes_back_when_the_run_fails() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("a run that failed")
    assert gc.isenabled() and gc.get_freeze_count() == 0
