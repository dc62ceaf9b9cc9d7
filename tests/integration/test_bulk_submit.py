"""Bulk submit on Kafka (`CommandBundle`): each command of a bundle is decided on its own,
with its own result and events, exactly once, through kill -9 in the middle of bundles;
a bundle sent again is answered again and changes nothing; a bundle one of whose commands
cannot be decided on its partition is refused whole, with a stable code, dead-lettered
once, and none of its commands decided."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from codec import Codec
from codec.bundle import BundleRefusalCode, CommandBundle
from codec.bundling import bundle_of
from foundation.settings import Settings
from ledger import commands
from ledger.errors import ErrorCode
from ledger.events import CommandResult, ResultStatus
from streams.processor import LedgerProcessor
from streamwallet.stack import Stack
from tests.checker import check_ledger, wait_for_results
from tests.faults import Streamer, funded_mixed_workload
from tests.principals import TESTER
from tests.support import PROCESSOR_READY_TIMEOUT_S, read_decoded, running_processor
from topologies import partition_for

pytestmark = pytest.mark.kafka

KILLS = 4
QUIET_S = 8.0  # no new event for this long: every flow has landed (ticks run every second)
QUIET_WAIT_S_MAX = 300.0


def test_kill_minus_nine_mid_bundle_loses_nothing_and_doubles_nothing(settings: Settings, tmp_path: Any) -> None:
    """A mixed workload (every command kind, same- and cross-partition, duplicates, invalid
    ones) in bundles of up to 100 commands of one partition, with the worker killed -9
    four times while bundles are being decided: every command has exactly one result, no
    sequence is reused, money is conserved, the changelog agrees with the events."""
    codec = Codec()
    rng = random.Random(31)
    # Two bundles a transaction at most: most turns leave bundles to the next (carried).
    settings = dataclasses.replace(settings, max_batch_messages=200)
    stack = Stack(settings, tmp_path)
    worker = stack.worker(1).start()
    try:
        worker.wait_ready()
        workload, _ = funded_mixed_workload(settings, accounts=120, count=12_000, seed=31)
        streamer = Streamer(settings, workload, rate_per_s=500, bundle_size=100).start()
        kills_mid_stream = 0
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, 2.5))
            kills_mid_stream += not streamer.done
            worker.kill()
            worker.start()
            worker.wait_ready()
        streamer.join()
        wait_for_results(settings, codec, {command.command_id for command in workload})
        # With 200 inputs a transaction on a busy machine, the legs of accepted cross-partition
        # transfers and the ticks of holds and batches trail the results by many seconds: the
        # events are read once no new one has come for a while, or the checker would compare
        # the changelog with events read while credits were still being applied.
        wait_until_quiet(settings, f"{settings.topic_prefix}.events")
        report = check_ledger(settings, codec, workload)
    finally:
        stack.stop_all()
    print(f"\n{report.summary()}\nkills while bundles were streaming: {kills_mid_stream} of {KILLS}")
    assert kills_mid_stream >= 2, "the workload ended before the worker was killed twice: make it longer"
    assert report.problems() == []


def wait_until_quiet(settings: Settings, topic: str) -> None:
    """Until the topic's end offsets have not moved for QUIET_S (at most QUIET_WAIT_S_MAX)."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "quiet"})
    try:
        partitions = [TopicPartition(topic, partition) for partition in range(settings.partitions)]
        deadline = time.monotonic() + QUIET_WAIT_S_MAX
        last: list[int] = []
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            ends = [consumer.get_watermark_offsets(partition, timeout=10)[1] for partition in partitions]
            if ends != last:
                last, quiet_since = ends, time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_S:
                return
            time.sleep(0.5)
    finally:
        consumer.close()


def opening(command_id: str, account: str, currency: str = "USD") -> commands.OpenAccount:
    """The tester opens `account` (each account's first command, dedup id "open")."""
    return commands.OpenAccount(
        principal=TESTER,
        owner=TESTER.principal_id,
        command_id=command_id,
        dedup_id="open",
        account_id=account,
        currency=currency,
    )


def deposit(command_id: str, account: str, amount: int) -> commands.Deposit:
    return commands.Deposit(
        principal=TESTER, command_id=command_id, dedup_id="d1", account_id=account, amount=amount, currency="USD"
    )


def produce_bundle(settings: Settings, codec: Codec, bundle: CommandBundle, key: str) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
    producer.produce(f"{settings.topic_prefix}.commands", codec.encode(bundle), key.encode())
    assert producer.flush(30) == 0


def accounts_on(partition: int, settings: Settings, run: str, count: int) -> list[str]:
    found = []
    for index in range(100_000):
        account = f"{run}-{index}"
        if partition_for(account, settings.partitions) == partition:
            found.append(account)
            if len(found) == count:
                return found
    raise AssertionError("no accounts on the partition")


def test_bundles_are_decided_command_by_command_and_a_resent_bundle_changes_nothing(settings: Settings) -> None:
    codec = Codec()
    run = uuid.uuid4().hex[:6]
    alice, bob = accounts_on(3, settings, run, 2)
    setup: list[commands.Command] = [
        opening(f"{run}-o1", alice),
        opening(f"{run}-o2", bob),
        deposit(f"{run}-d1", alice, 1_000),
    ]
    transfers: list[commands.Command] = [
        commands.Transfer(
            principal=TESTER,
            command_id=f"{run}-t{index}",
            dedup_id=f"t{index}",
            from_account_id=alice,
            to_account_id=bob,
            amount=100,
            currency="USD",
        )
        for index in range(12)  # the last two find too little money
    ]
    bundle = bundle_of(codec, f"{run}-bundle", [*setup, *transfers])
    with running_processor(settings):
        produce_bundle(settings, codec, bundle, alice)
        first = wait_for_results(settings, codec, {command.command_id for command in [*setup, *transfers]})
        produce_bundle(settings, codec, bundle, alice)  # a client resends the whole bundle
        wanted = {command.command_id for command in [*setup, *transfers]}
        deadline = time.monotonic() + 60
        results: list[CommandResult] = first
        while time.monotonic() < deadline and len(results) < 2 * len(wanted):
            time.sleep(0.5)
            results = wait_for_results(settings, codec, wanted)
    assert len(first) == len(wanted)  # one result per command
    by_id = {result.command_id: result for result in first}
    accepted = [f"{run}-t{index}" for index in range(10)]
    assert all(by_id[command_id].status is ResultStatus.ACCEPTED for command_id in accepted)
    assert {by_id[f"{run}-t10"].code, by_id[f"{run}-t11"].code} == {ErrorCode.INSUFFICIENT_FUNDS}
    again = results[len(first) :]
    assert len(again) == len(wanted) and all(result.replayed for result in again)
    events = read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.events", codec)
    balances = {event.account_id: event.balance for event in events}
    assert balances == {alice: 0, bob: 1_000}  # each transfer its own event, none applied twice
    assert len([event for event in events if event.account_id == bob]) == 1 + 10


@pytest.mark.parametrize("fault", ["misrouted", "undecodable", "nested"])
def test_a_bundle_that_cannot_be_decided_here_is_refused_whole_and_dead_lettered_once(
    settings: Settings, fault: str
) -> None:
    codec = Codec()
    run = uuid.uuid4().hex[:6]
    alice, other = accounts_on(2, settings, run, 2)
    (elsewhere,) = accounts_on(5, settings, f"{run}x", 1)
    good = [opening(f"{run}-o1", alice), deposit(f"{run}-d1", alice, 500)]
    parts = [codec.encode(command) for command in good]
    if fault == "misrouted":
        stray = opening(f"{run}-o2", elsewhere)
        parts.append(codec.encode(stray))
        code = BundleRefusalCode.MISROUTED_BUNDLE
    elif fault == "undecodable":
        parts.append(b"\xc3\x01 not a command")
        code = BundleRefusalCode.UNDECODABLE_COMMAND
    else:
        parts.append(codec.encode(CommandBundle(bundle_id="inner", commands=parts[:1])))
        code = BundleRefusalCode.UNDECODABLE_COMMAND
    with running_processor(settings):
        produce_bundle(settings, codec, CommandBundle(bundle_id=f"{run}-bad", commands=parts), alice)
        # A good bundle after it: once its results are in, the bad one has been decided too.
        probe = opening(f"{run}-probe", other, "EUR")
        produce_bundle(settings, codec, bundle_of(codec, f"{run}-probe", [probe]), other)
        results = wait_for_results(settings, codec, {probe.command_id})
    assert [result.command_id for result in results if result.command_id.startswith(run)] == [probe.command_id]
    letters = read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.deadletter", codec)
    ours = [letter for letter in letters if letter.key == alice.encode()]
    assert [letter.reason_code for letter in ours] == [code.value], [letter.reason for letter in ours]
    events = read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.events", codec)
    assert [event for event in events if event.account_id in (alice, elsewhere)] == []


class Died(Exception):
    """The worker's end, right after a commit: its thread stops there, as kill -9 would stop it."""


class DiesAfterCuttingAPartitionOff(LedgerProcessor):
    """A worker that dies right after committing the first transaction that left one partition's
    messages all to the next turn (carried), before it writes RocksDB."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.cut_off: set[int] = set()  # partitions of the batch as taken that the cut batch lacks
        self.cut_batch: Any = None  # the first batch cut so
        self.died = threading.Event()

    def _defer(self, batch: Any, kept: int) -> Any:
        cut = super()._defer(batch, kept)
        self.cut_off = {partition for _, partition in batch.first} - {partition for _, partition in cut.first}
        if self.cut_off and self.cut_batch is None:
            self.cut_batch = cut
        return cut

    def _settle(self, *, next_batch: Any = None, in_callback: bool = False) -> bool:
        committing = self._committing
        if committing is not None and committing.batch is self.cut_batch and committing.end.wait():
            self.died.set()  # committed, and RocksDB not written
            raise Died
        return super()._settle(next_batch=next_batch, in_callback=in_callback)

    def run_until_dead(self, stop: threading.Event) -> None:
        with contextlib.suppress(Died):
            self.run(stop)


def test_a_worker_dead_right_after_a_turn_that_carried_a_whole_partition_starts_again(settings: Settings) -> None:
    """A batch cut short (here: more commands than a transaction decides) carries the rest
    to the next turn, and its transaction's offsets are the cut batch's: a partition whose
    messages were all carried is sent at its first offset. Had the offsets been past a
    carried partition's messages, the group would hold an offset the state does not: a
    worker dead before the next turn would find that on its start and stop
    (streams/assignment.py), for good. Bundles of ten on two partitions, a transaction
    deciding five: the first message's bundle fills the transaction, the other partition's
    bundle is carried whole, and the worker dies right after that commit."""
    codec = Codec()
    settings = dataclasses.replace(settings, max_batch_messages=5)
    run = uuid.uuid4().hex[:6]
    (alice,), (bob,) = accounts_on(1, settings, run, 1), accounts_on(4, settings, run, 1)
    workload: list[commands.Command] = []
    dying = DiesAfterCuttingAPartitionOff(settings)
    stop = threading.Event()
    thread = threading.Thread(target=dying.run_until_dead, args=(stop,))
    thread.start()
    try:
        assert dying.ready.wait(PROCESSOR_READY_TIMEOUT_S)
        producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
        for round_ in range(20):  # both bundles are almost always taken in one batch; retried if not
            for account in (alice, bob):
                ten: list[commands.Command] = [opening(f"{run}-{account}-o", account)] if round_ == 0 else []
                while len(ten) < 10:
                    ten.append(
                        commands.Deposit(
                            principal=TESTER,
                            command_id=f"{run}-{account}-{round_}-{len(ten)}",
                            dedup_id=f"{round_}-{len(ten)}",
                            account_id=account,
                            amount=1,
                            currency="USD",
                        )
                    )
                workload.extend(ten)
                bundle = bundle_of(codec, f"{run}-{account}-{round_}", ten)
                producer.produce(f"{settings.topic_prefix}.commands", codec.encode(bundle), account.encode())
            assert producer.flush(30) == 0
            if dying.died.wait(5):
                break
        assert dying.died.is_set(), "no batch held both partitions' bundles"
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    with running_processor(settings):  # raises if the worker cannot start again
        report = check_ledger(settings, codec, workload)
    assert report.problems() == []
