"""The loop decides a batch while the previous batch's transaction commits
(streams/processor.py). Such a batch reads the previous one's uncommitted state: if that
transaction does not commit, the batch decided on it must go too, and both must be
consumed again, or a change would be decided on state that never was (doubled or lost
money). Faults injected into the real producer while commands stream in: commits that
take long (so the next batch is decided on them) and then fail, abortable or fatal, and a
worker stopped while its last transaction fails. The whole ledger is checked after each
(tests/checker.py): every command one result, every event once, balances that add up."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from codec import Codec
from foundation.settings import Settings
from streams.processor import LedgerProcessor
from tests.checker import check_ledger
from tests.faults import Streamer, funded_mixed_workload

pytestmark = pytest.mark.kafka

COMMIT_WAIT_S = 0.25  # the failing commit's wait: the batch decided ahead of it waits with it
# Before a failing transaction begins, the loop waits this long, so that input has most likely
# arrived when its commit starts: the loop decides ahead only what is already there. (Without
# the wait, a batch that took all there was left nothing to decide ahead; CI once saw 2 of 4.)
BEFORE_FAILING_S = 0.1
ABORTABLE = KafkaError(KafkaError._STATE, "injected: the commit failed", txn_requires_abort=True)
FATAL = KafkaError(KafkaError._FENCED, "injected: the producer was fenced", fatal=True)


class SlowFailingCommits:
    """The worker's real transactional producer. Its chosen transactions begin late, so that
    input is waiting when they commit, and their commits wait, so that the loop decides its
    next batch on their state, then fail as `fail_at` says; the transaction really is open
    (the loop's abort, or the next producer, really ends it). `waiting` is set while such a
    commit waits."""

    def __init__(self, producer: Any, fail_at: dict[int, KafkaError]) -> None:
        self._producer = producer
        self.fail_at = fail_at
        self.commits = 0
        self.failed = 0
        self.waiting = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def begin_transaction(self, *args: Any) -> None:
        if self.commits + 1 in self.fail_at:  # the transaction beginning is the next to commit
            time.sleep(BEFORE_FAILING_S)
        self._producer.begin_transaction(*args)

    def commit_transaction(self, *args: Any) -> None:
        self.commits += 1
        error = self.fail_at.get(self.commits)
        if error is None:
            self._producer.commit_transaction(*args)
            return
        self.waiting.set()
        time.sleep(COMMIT_WAIT_S)
        self.waiting.clear()
        self.failed += 1
        raise KafkaException(error)


class Watched(LedgerProcessor):
    """Counts the batches dropped because the transaction they were decided on failed."""

    dropped_ahead = 0

    def _settle(self, *, next_batch: Any = None, in_callback: bool = False) -> bool:
        committed = super()._settle(next_batch=next_batch, in_callback=in_callback)
        if not committed and next_batch is not None:
            self.dropped_ahead += 1
        return committed


def running(processor: LedgerProcessor) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,))
    thread.start()
    assert processor.ready.wait(60)
    return thread, stop


def test_a_batch_decided_on_a_transaction_that_fails_is_decided_again_and_nothing_is_lost_or_doubled(
    settings: Settings,
) -> None:
    codec = Codec()
    processor = Watched(settings)
    thread, stop = running(processor)
    try:
        # Abortable, then twice in a row (the batch decided again is itself decided on again),
        # then twice more, then fatal: the producer is replaced and every partition reloaded.
        fail_at = {4: ABORTABLE, 9: ABORTABLE, 10: ABORTABLE, 13: ABORTABLE, 16: ABORTABLE, 20: FATAL}
        failing = SlowFailingCommits(processor._producer, fail_at)
        processor._producer = failing  # between transactions: the loop is idle, waiting for input
        workload, _ = funded_mixed_workload(settings, accounts=30, count=2000, seed=21)
        Streamer(settings, workload, rate_per_s=400).start().join()
        report = check_ledger(settings, codec, workload, results_timeout_s=120, settle_s=3)
        assert failing.failed == len(fail_at), "the injected failures did not all happen"
        # Whether input waits when a commit starts is the machine's timing: most of the six
        # failing commits must have had a batch decided on them, or the test proved nothing.
        assert processor.dropped_ahead >= 3, f"only {processor.dropped_ahead} batches were decided on a failing commit"
        assert processor.metrics.aborts >= 3 and processor.metrics.producers_replaced >= 1
    finally:
        stop.set()
        thread.join(30)
    print(f"\n{report.summary()}; dropped ahead {processor.dropped_ahead}, aborts {processor.metrics.aborts}")
    assert report.problems() == []


class StopsWhileCommitting(LedgerProcessor):
    """Its loop is told to stop right after the turn that started transaction `stop_at`,
    so the stop itself meets that transaction's end."""

    def __init__(self, settings: Settings, *, stop_at: int) -> None:
        super().__init__(settings)
        self.stop_at = stop_at
        self.started = 0
        self.stop = threading.Event()

    def _iteration(self) -> None:
        before = self._committing
        super()._iteration()
        if self._committing is not None and self._committing is not before:
            self.started += 1
            if self.started == self.stop_at:
                self.stop.set()


def test_a_worker_stopped_while_its_last_transaction_fails_leaves_nothing_half_done(settings: Settings) -> None:
    """The stop waits for the committing transaction; it fails, so the stop writes no
    checkpoint, and the next worker decides that batch (and what came after it) again."""
    codec = Codec()
    first = StopsWhileCommitting(settings, stop_at=8)
    thread = threading.Thread(target=first.run, args=(first.stop,))
    thread.start()
    assert first.ready.wait(60)
    failing = SlowFailingCommits(first._producer, {8: ABORTABLE})
    first._producer = failing  # between transactions: the loop is idle, waiting for input
    workload, _ = funded_mixed_workload(settings, accounts=20, count=1200, seed=22)
    streamer = Streamer(settings, workload, rate_per_s=400).start()
    try:
        thread.join(120)
        assert not thread.is_alive(), "the worker did not stop"
        assert failing.failed == 1 and first.metrics.aborts == 1
        assert first._reload_owned, "the failure was not met by the stop"
    finally:
        first.stop.set()
        thread.join(30)
    second = LedgerProcessor(settings)
    thread, stop = running(second)
    try:
        streamer.join()
        report = check_ledger(settings, codec, workload, results_timeout_s=120, settle_s=3)
    finally:
        stop.set()
        thread.join(30)
    print(f"\n{report.summary()}")
    assert report.problems() == []
