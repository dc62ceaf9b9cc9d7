"""An abortable transaction error mid-stream (as a rebalance or a broker hiccup causes):
the transaction is aborted, the staged state dropped, the consumer rewound, and the batch
decided again, so every command still gets exactly one result and no change is lost or
applied twice."""

from __future__ import annotations

import collections
import dataclasses
import random
import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from codec import Codec
from foundation.settings import Settings
from ledger import commands
from streams.processor import LedgerProcessor
from tests.checker import check_ledger
from tests.faults import FailingCalls, Streamer, funded_mixed_workload
from tests.integration.test_end_to_end import wait_for_results
from tests.model import SingleAccountModel
from tests.principals import TESTER
from tests.support import outcome, read_decoded

pytestmark = pytest.mark.kafka

FAILING_COMMITS = (3, 7, 8)  # the 3rd, 7th and 8th commits fail (two in a row, too)


class FailingCommits:
    """The worker's real transactional producer, whose chosen commits fail as abortable
    errors (the transaction is really open: the processor's abort really aborts it)."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def commit_transaction(self, *args: Any) -> None:
        self.commits += 1
        if self.commits in FAILING_COMMITS:
            raise KafkaException(KafkaError(KafkaError._STATE, "injected", txn_requires_abort=True))
        self._producer.commit_transaction(*args)


def test_aborted_transactions_are_decided_again_and_nothing_is_lost_or_doubled(settings: Settings) -> None:
    codec = Codec()
    processor = LedgerProcessor(settings)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,))
    thread.start()
    try:
        assert processor.ready.wait(60)
        failing = FailingCommits(processor._producer)
        processor._producer = failing  # between transactions: the loop is idle, waiting for input
        rng = random.Random(3)
        run = uuid.uuid4().hex[:6]
        accounts = [f"ab-{run}-{index}" for index in range(20)]
        workload: list[commands.Command] = [
            commands.OpenAccount(
                principal=TESTER,
                owner=TESTER.principal_id,
                command_id=f"{run}-o{index}",
                dedup_id="o",
                account_id=account,
                currency="USD",
            )
            for index, account in enumerate(accounts)
        ]
        for index in range(1500):
            kind = commands.Deposit if rng.random() < 0.6 else commands.Withdraw
            workload.append(
                kind(
                    principal=TESTER,
                    command_id=f"{run}-{index}",
                    dedup_id=f"d{index}",
                    account_id=rng.choice(accounts),
                    amount=rng.randint(1, 100),
                    currency="USD",
                )
            )
        model = SingleAccountModel()
        expected = {command.command_id: model.apply(command) for command in workload}
        producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
        for index, command in enumerate(workload):
            producer.produce(f"{settings.topic_prefix}.commands", codec.encode(command), command.routing_key.encode())
            if index % 100 == 0:
                producer.flush(10)
                # Spread the stream over many transactions, each chunk after a commit: on a loaded
                # machine the worker took the whole stream in 6 transactions, and commits 7 and 8,
                # the ones that fail, never came.
                committed, deadline = failing.commits, time.monotonic() + 10
                while failing.commits == committed and time.monotonic() < deadline:
                    time.sleep(0.01)
        producer.flush(10)
        results = wait_for_results(settings, codec, set(expected))
        # librdkafka may add aborts of its own: after an abort purges produced messages, the
        # next transaction can meet OUT_OF_ORDER_SEQUENCE_NUMBER, abortable too, and the loop
        # aborts and decides again.
        assert processor.metrics.aborts >= len(FAILING_COMMITS)
    finally:
        stop.set()
        thread.join(30)
    counts = collections.Counter(result.command_id for result in results)
    assert [command_id for command_id in expected if counts[command_id] != 1] == []
    by_id = {result.command_id: result for result in results}
    assert [c for c, want in expected.items() if (want.status, want.code, want.replayed) != outcome(by_id[c])] == []
    events = read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.events", codec)
    per_account: dict[str, list[int]] = collections.defaultdict(list)
    for event in events:
        per_account[event.account_id].append(event.sequence)
    assert all(sequences == list(range(1, len(sequences) + 1)) for sequences in per_account.values())
    latest = {event.account_id: event.balance for event in events}
    assert latest == model.balance


def test_an_abort_in_the_middle_of_a_batch_loses_no_message_of_any_partition(settings: Settings) -> None:
    """produce() fails while a message in the middle of a batch is being handled: the
    batch spans several partitions of both input topics (commands, and the legs of
    cross-partition flows), and the messages after the failing one must be consumed
    again too, not only those already handled."""
    codec = Codec()
    processor = LedgerProcessor(settings)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,))
    thread.start()
    try:
        assert processor.ready.wait(60)
        failing = FailingCalls(
            processor._producer,
            method="produce",
            fail_at=(40, 41, 300, 700, 1100, 1800, 2600, 3300),
            topics=(f"{settings.topic_prefix}.events",),
        )
        processor._producer = failing  # between transactions: the loop is idle, waiting for input
        workload, _ = funded_mixed_workload(settings, accounts=40, count=3000, seed=11)
        Streamer(settings, workload, rate_per_s=2000).start().join()
        report = check_ledger(settings, codec, workload, results_timeout_s=90, settle_s=3)
        assert failing.failed >= 6, "the injected failures did not all happen"
    finally:
        stop.set()
        thread.join(30)
    print(f"\n{report.summary()}; aborts {processor.metrics.aborts}")
    assert report.problems() == []


class HangingSendOffsets:
    """The worker's real transactional producer, whose chosen send_offsets_to_transaction calls
    never return until the test ends, as librdkafka's did after a group coordinator was lost
    (issues #5456, #5511); the transaction really is open when it hangs."""

    def __init__(self, producer: Any, hang_at: tuple[int, ...], released: threading.Event) -> None:
        self._producer = producer
        self.hang_at = hang_at
        self.calls = 0
        self.hung = 0
        self.released = released

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self.calls += 1
        if self.calls in self.hang_at:
            self.hung += 1
            self.released.wait()
            raise KafkaException(KafkaError(KafkaError._FENCED, "released after the test", fatal=True))
        self._producer.send_offsets_to_transaction(*args)


def test_a_send_offsets_call_that_never_returns_replaces_the_producer_and_loses_nothing(settings: Settings) -> None:
    """Defect: a worker hung for good in send_offsets_to_transaction (its timeout not applied
    by librdkafka) and every command of its partitions waited forever. Now the call has a
    deadline, the stuck producer is replaced (fenced) and the batch decided again."""
    codec = Codec()
    quick = dataclasses.replace(settings, transaction_timeout_ms=3000)
    processor = LedgerProcessor(quick)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,))
    thread.start()
    released = threading.Event()
    try:
        assert processor.ready.wait(60)
        hanging = HangingSendOffsets(processor._producer, hang_at=(20,), released=released)
        processor._producer = hanging  # between transactions: the loop is idle, waiting for input
        workload, _ = funded_mixed_workload(quick, accounts=20, count=1500, seed=13)
        Streamer(quick, workload, rate_per_s=300).start().join()
        report = check_ledger(quick, codec, workload, results_timeout_s=120, settle_s=3)
        assert hanging.hung == 1, "the injected hang did not happen"
        assert processor.metrics.producers_replaced >= 1
        assert thread.is_alive(), "the worker stopped"
    finally:
        released.set()
        stop.set()
        thread.join(30)
    print(f"\n{report.summary()}; producers replaced {processor.metrics.producers_replaced}")
    assert report.problems() == []
