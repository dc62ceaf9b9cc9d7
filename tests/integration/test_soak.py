"""The soak: at least a million commands of every kind through two workers and the query
service on a three-broker cluster, with a fault every few seconds, of every kind we can
produce on one machine — a worker killed (kill -9; its supervisor restarts it), a worker
frozen past its session (a zombie), a broker killed (the leader of a commands partition,
a worker's transaction coordinator, the workers' group coordinator, the active controller)
and restarted, a broker frozen past its session. Faults go on until every command is
answered, not only while the stream arrives: on a small machine the ledger falls behind, and
the backlog is answered under faults too. Then the checker and reconcile, as after every fault test, and the figures:
commands, faults by kind, lost, doubled, conservation error, and the longest gap in results
per fault kind. A progress line each minute says how far the stream and the answers are.

Run with `pytest --soak tests/integration/test_soak.py -s` (it takes a while).
"""

from __future__ import annotations

import collections
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from codec import Codec
from deploy.local import kafka
from sinks.commands import EXIT_OK, reconcile_command
from streamwallet.stack import Stack
from tests.checker import check_ledger
from tests.conftest import fresh_settings
from tests.faults import ResultsWatcher, Streamer, dump_stacks, funded_mixed_workload, pause_for
from tests.integration.test_broker_loss import BrokerFaults, Fault

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

BASE_PORT = int(os.environ.get("STREAMWALLET_TEST_KAFKA3_SOAK_PORT", "29600"))
SOAK_COMMANDS = int(os.environ.get("STREAMWALLET_SOAK_COMMANDS", "1000000"))
SOAK_RATE_PER_S = float(os.environ.get("STREAMWALLET_SOAK_RATE", "1500"))
FAULT_EVERY_S = (2.0, 6.0)
# Faults go on after the stream ends, until the ledger has answered it all: on a small machine
# the ledger answers slower than the stream arrives, and the backlog must be answered under
# faults too. Unless no result came for this long (a fault's gap is well below it): then the
# checker says what is missing.
RESULTS_STALLED_S = 180.0
PROGRESS_EVERY_S = 60.0
# Reading a topic to its end: a million commands' changelog holds millions of records (the
# default 30 s ran out reading it in the first million-command run).
CHECK_READ_TIMEOUT_S = 900.0
WORKER_FAULTS = ("worker killed", "worker frozen")
BROKER_FAULTS = BrokerFaults.KINDS


def faulting(streamer: Streamer, watcher: ResultsWatcher, commands: int) -> bool:
    """While the stream arrives, and then until every command is answered or results stalled."""
    if not streamer.done:
        return True
    if len(watcher.arrivals) >= commands:
        return False
    last_s = watcher.arrivals[-1] if watcher.arrivals else 0.0
    return time.monotonic() - last_s < RESULTS_STALLED_S


@pytest.fixture
def cluster() -> Iterator[kafka.Cluster]:
    started = kafka.start(name="test3-soak", brokers=3, base_port=BASE_PORT)
    try:
        yield started
    finally:
        kafka.stop(name="test3-soak", wipe=True)


@pytest.mark.timeout(6 * 3600)
def test_a_million_commands_through_every_kind_of_fault(cluster: kafka.Cluster, tmp_path: Any) -> None:
    settings = fresh_settings(
        cluster.bootstrap_servers, tmp_path, prefix="s", replication_factor=3, min_insync_replicas=2
    )
    codec = Codec()
    rng = random.Random(41)
    stack = Stack(settings, tmp_path)
    workers = [stack.worker(1).start(), stack.worker(2).start()]
    query = stack.query().start()
    for process in [*workers, query]:
        process.wait_ready()
    stack.supervise()
    watcher = ResultsWatcher(settings)
    brokers = BrokerFaults(cluster, settings)
    faults: list[Fault] = []
    started_s = time.monotonic()
    try:
        workload, _ = funded_mixed_workload(settings, accounts=2_000, count=SOAK_COMMANDS, seed=41)
        streamer = Streamer(settings, workload, rate_per_s=SOAK_RATE_PER_S).start()
        progress_s = time.monotonic()
        while faulting(streamer, watcher, len(workload)):
            if time.monotonic() - progress_s > PROGRESS_EVERY_S:
                progress_s = time.monotonic()
                print(
                    f"\nsoak +{progress_s - started_s:.0f}s: streamed {streamer.sent}/{len(workload)}, "
                    f"answered {len(watcher.arrivals)}, faults {len(faults)}",
                    flush=True,
                )
            time.sleep(rng.uniform(*FAULT_EVERY_S))
            kind = rng.choice([*WORKER_FAULTS, *BROKER_FAULTS])
            if kind == "worker killed":
                fault = Fault(kind, 0, time.monotonic())
                rng.choice(workers).kill(restart=True)  # the supervisor starts it again
                fault.ended_s = time.monotonic()
                faults.append(fault)
            elif kind == "worker frozen":
                fault = Fault(kind, 0, time.monotonic())
                pause_for(rng.choice(workers), settings.session_timeout_ms / 1000 + rng.uniform(1.0, 5.0))
                fault.ended_s = time.monotonic()
                faults.append(fault)
            else:
                before = len(brokers.done)
                brokers.fault(kind, rng)
                faults.extend(brokers.done[before:])
        streamer.join()
        report = check_ledger(
            settings,
            codec,
            workload,
            results_timeout_s=900,
            settle_s=3 * settings.tick_interval_ms / 1000 + 3,
            read_timeout_s=CHECK_READ_TIMEOUT_S,
        )
        if report.missing:
            dump_stacks(stack.processes)
        reconciled = reconcile_command(settings, via="service")
    finally:
        watcher.stop()
        stack.stop_all()
    kinds = collections.Counter(fault.kind for fault in faults)
    gaps: dict[str, float] = {}
    for fault in faults:
        gaps[fault.kind] = max(gaps.get(fault.kind, 0.0), watcher.longest_gap_s(fault.started_s, fault.ended_s + 30))
    conservation = sum(abs(error) for error in report.conservation_error.values())
    print(
        f"\nsoak: {report.commands} commands in {time.monotonic() - started_s:.0f}s; faults {sum(kinds.values())}: "
        f"{dict(kinds)}\nlost {len(report.missing)}, doubled {len(report.doubled)}, reused sequences "
        f"{report.reused_sequences}, conservation error {conservation}\nlongest gap in results per fault kind (s): "
        + ", ".join(f"{kind} {gap:.1f}" for kind, gap in sorted(gaps.items()))
        + f"\nrestarts by the supervisor: {[process.restarts for process in [*workers, query]]}"
    )
    assert "InvariantViolation" not in "".join(process.tail(10**9) for process in [*workers, query])
    assert report.problems() == []
    assert reconciled == EXIT_OK
