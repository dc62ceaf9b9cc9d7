"""Zombie workers: a worker frozen with SIGSTOP for longer than its session, while the
commands keep coming and its partitions move to the other worker, then woken with
SIGCONT — again and again, at random moments of a mixed stream. The woken worker finds
itself fenced: it must never commit, checkpoint or decide on stale state. The checker
(tests/checker.py) then finds, from the topics alone, every command with exactly one
result, no sequence number used twice, conservation per currency, every account within
its limits at every sequence, the events equal to the changelog, and nothing in flight.

The soak variant (`--soak`) runs the same against a much longer stream.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from codec import Codec
from foundation.settings import Settings
from streamwallet.stack import Stack
from tests.checker import check_ledger
from tests.faults import Streamer, dump_stacks, funded_mixed_workload, log_count, pause_for

pytestmark = pytest.mark.kafka


def run_zombies(settings: Settings, tmp_path: Any, *, commands: int, rate_per_s: float, seed: int) -> None:
    codec = Codec()
    rng = random.Random(seed)
    stack = Stack(settings, tmp_path)
    workers = [stack.worker(1).start(), stack.worker(2).start()]
    for worker in workers:
        worker.wait_ready()
    stack.supervise()  # a worker that leaves because it was fenced is started again, as in production
    pauses = 0
    try:
        workload, _ = funded_mixed_workload(settings, accounts=200, count=commands, seed=seed)
        streamer = Streamer(settings, workload, rate_per_s=rate_per_s).start()
        while not streamer.done:
            time.sleep(rng.uniform(1.0, 4.0))
            victim = rng.choice([worker for worker in workers if worker.alive] or workers)
            # Past the session timeout: the group gives its partitions to the other worker,
            # which restores them and carries on while this one is frozen mid-whatever.
            pause_for(victim, settings.session_timeout_ms / 1000 + rng.uniform(2.0, 6.0))
            pauses += 1
        streamer.join()
        report = check_ledger(settings, codec, workload, settle_s=3 * settings.tick_interval_ms / 1000 + 3)
        if report.missing:
            dump_stacks(stack.processes)
    finally:
        stack.stop_all()
    takeovers = sum(log_count(worker, "lost partitions") for worker in workers)
    print(
        f"\n{report.summary()}\npauses {pauses}, partitions lost by a frozen worker {takeovers}, "
        f"restarts {[worker.restarts for worker in workers]} (exit statuses {[worker.exits for worker in workers]})"
    )
    for worker in workers:
        assert "InvariantViolation" not in worker.tail(10**9), f"{worker.name} hit an invariant violation"
    assert pauses >= 3
    # A zombie was made: a worker frozen past its session found its partitions taken over.
    assert takeovers >= 1, "no frozen worker lost its partitions: no zombie was produced"
    assert report.problems() == []


def test_zombie_workers_never_commit_or_decide_on_stale_state(settings: Settings, tmp_path: Any) -> None:
    run_zombies(settings, tmp_path, commands=9_000, rate_per_s=300, seed=21)


@pytest.mark.slow
def test_zombie_workers_soak(settings: Settings, tmp_path: Any) -> None:
    run_zombies(settings, tmp_path, commands=200_000, rate_per_s=800, seed=22)
