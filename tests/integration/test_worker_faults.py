"""The worker loop against the faults that reading it found (issue 10), each produced for
real against a real broker, with the loop running in this process so the test can choose
the moment:

* a checkpoint must never cover changelog records this worker's RocksDB does not hold:
  not when another owner wrote them while this worker thought it still owned the
  partition (a zombie that then stops or loses the partition), and not when the worker
  leaves after a commit it could not confirm;
* a partition's new owner must not restore before the previous owner's transactional
  offset commit is decided (KIP-447's stable offsets), or it starts after a batch whose
  state change it never restored;
* a rebalance served in the middle of taking a batch must not leave the loop holding
  messages of partitions it no longer owns, or messages it will be given again.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from bench.topics import changelog_state
from codec import Codec
from deploy.local import kafka
from foundation.clients import kafka_config
from foundation.settings import Settings
from ledger import commands
from ledger.accounts import Account, AccountStatus
from ledger.state import Table
from streams.processor import BROKER_OUTAGE_S_MAX, LedgerProcessor, consumer_group, transactional_id
from streams.reads import committed_account
from streams.renewals import WorkerFenced
from streams.store import changelog_key
from tests.checker import check_ledger, wait_for_results
from tests.conftest import TEST_KAFKA_PORT
from tests.faults import Streamer
from tests.principals import TESTER
from topologies import partition_for
from topologies.admin import ADMIN_TIMEOUT_S, UNANSWERED_RETRY_S_MAX, ensure_topics
from topologies.topics import Topology

pytestmark = pytest.mark.kafka


class Running:
    """A LedgerProcessor on a thread of this process; `failure` holds what stopped it."""

    def __init__(self, settings: Settings) -> None:
        self.processor = LedgerProcessor(settings)
        self.stop_event = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"loop-{settings.worker_id}", daemon=True)

    def _run(self) -> None:
        try:
            self.processor.run(self.stop_event)
        except BaseException as error:  # noqa: BLE001 - recorded for the test to look at
            self.failure = error

    def start(self, *, ready: bool = True) -> Running:
        self.thread.start()
        if ready:
            assert self.processor.ready.wait(90), "the worker did not become ready"
        return self

    def where(self) -> str:
        """What the worker's thread is doing now (for a test that finds it stuck)."""
        frame = sys._current_frames().get(self.thread.ident or -1)
        return "not running" if frame is None else "".join(traceback.format_stack(frame)[-8:])

    def stop(self) -> None:
        self.stop_event.set()
        # A worker inside a retry for a broker that is away finishes it first (within its budget).
        self.thread.join(BROKER_OUTAGE_S_MAX + ADMIN_TIMEOUT_S)
        assert not self.thread.is_alive(), "the worker did not stop"


def produce(settings: Settings, codec: Codec, *messages: commands.Command) -> None:
    produce_raw(settings, *((codec.encode(command), command.routing_key.encode()) for command in messages))


def produce_raw(settings: Settings, *records: tuple[bytes, bytes]) -> None:
    """(value, key) records to the commands topic, whatever their values hold."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
    for value, key in records:
        producer.produce(f"{settings.topic_prefix}.commands", value, key)
    assert producer.flush(30) == 0


def open_and_fund(account: str, run: str) -> list[commands.Command]:
    return [
        commands.OpenAccount(
            principal=TESTER,
            owner=TESTER.principal_id,
            command_id=f"{run}-open",
            dedup_id="open",
            account_id=account,
            currency="USD",
        ),
        commands.Deposit(
            principal=TESTER, command_id=f"{run}-d1", dedup_id="d1", account_id=account, amount=100, currency="USD"
        ),
    ]


def wait_until(predicate: Any, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout_s}s")


def latest_account(settings: Settings, codec: Codec, account: str) -> Account:
    stored: Account = changelog_state(settings, codec)[Table.ACCOUNTS][account]
    return stored


def foreign_write(settings: Settings, codec: Codec, account: Account, *, transactional: str) -> None:
    """Another owner of the account's partition commits a new state of it to the changelog."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "transactional.id": transactional})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(
        f"{settings.topic_prefix}.changelog",
        codec.encode(account),
        changelog_key(Table.ACCOUNTS, account.account_id),
        partition=partition_for(account.account_id, settings.partitions),
    )
    producer.commit_transaction(30)


@pytest.fixture
def codec() -> Codec:
    return Codec()


class LateFirstProduce:
    """The real producer, whose first produce() comes late: by then the send_offsets call that
    started the transaction beside it has met the fence, and produce() itself raises the fatal
    error (as on a busy machine, where deciding the batch takes that long)."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._late = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def produce(self, *args: Any, **kwargs: Any) -> None:
        if self._late:
            self._late = False
            time.sleep(3)
        self._producer.produce(*args, **kwargs)


POISON = b"not a command, poisoned"


@pytest.mark.parametrize("meets_the_fence", ["first", "at produce", "dead-lettering"])
def test_a_fenced_worker_reloads_and_never_checkpoints_records_it_did_not_apply(
    settings: Settings, codec: Codec, meets_the_fence: str
) -> None:
    """A worker whose producer is fenced (here by another producer with its transactional id,
    which commits a newer state of an account to the changelog meanwhile; Kafka 4 fences
    the same way when it aborts a transaction that outlived its timeout) replaces its
    producer and reloads its partitions from the changelog: it then decides on the newer
    state, never the one its RocksDB last had, and its checkpoints never claim records its
    RocksDB did not receive — on restart the state is right too."""
    run = uuid.uuid4().hex[:6]
    account = f"zc-{run}"
    first = Running(settings).start()
    produce(settings, codec, *open_and_fund(account, run))
    wait_until(lambda: account in changelog_state(settings, codec)[Table.ACCOUNTS], what="the deposit committed")
    time.sleep(1)  # the loop applies the commit to RocksDB right after it
    newer = latest_account(settings, codec, account)
    newer.balance, newer.sequence = 777, newer.sequence + 5
    producers_before = _live_producers()
    at_reload = _count_producers_at_reload(first.processor)
    foreign_write(settings, codec, newer, transactional=transactional_id(settings))  # fences the first's producer
    if meets_the_fence != "first":
        first.processor._producer = LateFirstProduce(first.processor._producer)  # the loop is idle, waiting for input
    # A worker learns of the fence at its next transaction: an input, here another account's
    # (an idle partition gets no tick: streams/processor.py `_due_ticks`), or one it cannot
    # decode, whose dead letter is then the first record it produces.
    if meets_the_fence == "dead-lettering":
        produce_raw(settings, (POISON, f"{account}-next".encode()))
    else:
        produce(settings, codec, *open_and_fund(f"{account}-next", f"{run}-next"))
    wait_until(lambda: first.processor.metrics.producers_replaced >= 1, what="the fenced producer replaced")
    try:
        # The fenced producer is freed once replaced (its threads and a connection to every
        # broker), and so is the input it failed on: a zombie fenced again and again must not
        # pile them up. It is freed before the partitions are reloaded, which can take long on
        # a busy broker: in one CI run the fenced producer outlived a 10 s wait, held through
        # the offsets' call's error while the reload ran.
        wait_until(lambda: bool(at_reload), what="the partitions reloaded")
        assert at_reload[0] <= producers_before, "the fenced producer was still held when the partitions were reloaded"
        _wait_freed(producers_before, timeout_s=10)
        wait_until(lambda: _live_messages(POISON) == 0, what="the poisoned input freed", timeout_s=10)
        _, reloaded = committed_account(first.processor, account)
        assert reloaded is not None and (reloaded.balance, reloaded.sequence) == (777, newer.sequence)
    finally:
        first.stop()
    assert first.failure is None, first.failure

    second = Running(settings).start()  # the same worker id and RocksDB folder
    try:
        _, restored = committed_account(second.processor, account)
        assert restored is not None
        assert (restored.balance, restored.sequence) == (777, newer.sequence), (
            "the restart restored from a checkpoint past records its RocksDB never held"
        )
    finally:
        second.stop()


def _live_producers() -> int:
    """The librdkafka producers alive in this process (gc tracks them)."""
    gc.collect()
    return sum(1 for thing in gc.get_objects() if type(thing) is Producer)


def _count_producers_at_reload(processor: LedgerProcessor) -> list[int]:
    """The live producers counted as each reload of `processor`'s partitions began, listed
    once that reload has ended."""
    counted: list[int] = []
    ownership = processor._ownership
    assert ownership is not None
    reload = ownership.reload

    def counting(consumer: Any) -> None:
        live = _live_producers()
        reload(consumer)
        counted.append(live)

    ownership.reload = counting  # type: ignore[method-assign]
    return counted


def _wait_freed(producers_before: int, *, timeout_s: float) -> None:
    """Until no more producers live than before the fence; past `timeout_s`, fails naming
    what refers to each live producer (a frame by its function, a thread by its name)."""
    deadline = time.monotonic() + timeout_s
    while _live_producers() > producers_before:
        if time.monotonic() > deadline:
            raise AssertionError(f"the fenced producer was not freed within {timeout_s:g} s: {_producer_holders()}")
        time.sleep(0.1)


def _producer_holders() -> str:
    gc.collect()
    described = []
    producers = [thing for thing in gc.get_objects() if type(thing) is Producer]
    for producer in producers:
        holders = []
        for holder in gc.get_referrers(producer):
            if holder is producers:
                continue
            name = getattr(getattr(holder, "f_code", None), "co_name", None) or getattr(holder, "name", "")
            holders.append(f"{type(holder).__name__}{f' {name}' if name else ''}")
        described.append(f"producer {id(producer):#x} held by [{', '.join(holders)}]")
    return "; ".join(described)


def _live_messages(value: bytes) -> int:
    """The consumed messages alive in this process whose value is `value` (gc tracks them)."""
    gc.collect()
    return sum(1 for thing in gc.get_objects() if type(thing) is Message and thing.value() == value)


class CommitThenFail:
    """The real producer. The first transaction that writes a changelog record under `key`
    really commits, then reports a fatal error (a commit whose answer was lost): the worker
    must not take the batch for undone and decide it again on the old state, and must not
    checkpoint past what its RocksDB holds."""

    def __init__(self, producer: Any, *, key: bytes) -> None:
        self._producer = producer
        self._key = key
        self._armed = False
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None:
        if topic.endswith(".changelog") and key == self._key:
            self._armed = True
        self._producer.produce(topic, value, key, **kwargs)

    def commit_transaction(self, *args: Any) -> None:
        self._producer.commit_transaction(*args)
        if self._armed and not self.failed:
            self.failed = True
            raise KafkaException(KafkaError(KafkaError._FATAL, "injected after the commit", fatal=True))


def test_a_commit_whose_answer_was_lost_is_neither_redone_nor_checkpointed_past(
    settings: Settings, codec: Codec
) -> None:
    run = uuid.uuid4().hex[:6]
    account = f"fc-{run}"
    first = Running(settings).start()
    produce(settings, codec, *open_and_fund(account, run))
    wait_until(lambda: account in changelog_state(settings, codec)[Table.ACCOUNTS], what="the deposit committed")
    time.sleep(1)
    failing = CommitThenFail(first.processor._producer, key=changelog_key(Table.ACCOUNTS, account))
    first.processor._producer = failing
    produce(
        settings,
        codec,
        commands.Deposit(
            principal=TESTER, command_id=f"{run}-d2", dedup_id="d2", account_id=account, amount=50, currency="USD"
        ),
    )
    wait_until(lambda: first.processor.metrics.producers_replaced >= 1, what="the failed producer replaced")
    produce(
        settings,
        codec,
        commands.Deposit(
            principal=TESTER, command_id=f"{run}-d3", dedup_id="d3", account_id=account, amount=7, currency="USD"
        ),
    )
    results = wait_for_results(settings, codec, {f"{run}-d2", f"{run}-d3"}, timeout_s=60)
    first.stop()
    assert failing.failed and first.failure is None, first.failure
    by_id = {result.command_id: result for result in results if result.command_id in {f"{run}-d2", f"{run}-d3"}}
    assert len([result for result in results if result.command_id == f"{run}-d2"]) == 1, "the deposit was redone"
    assert [(p.sequence, p.balance) for p in by_id[f"{run}-d3"].positions] == [(4, 157)]

    second = Running(settings).start()
    try:
        _, restored = committed_account(second.processor, account)
        assert restored is not None and (restored.sequence, restored.balance) == (4, 157), (
            "the worker checkpointed past a commit its RocksDB never received"
        )
    finally:
        second.stop()


def test_a_new_owner_waits_for_the_previous_owners_pending_offsets_before_it_restores(
    settings: Settings, codec: Codec
) -> None:
    """A zombie whose offset commit the group accepted, but whose changelog records reach
    the broker only after a new owner restored (produce requests still in flight), commits
    its transaction late. The new owner must not restore before that transaction is decided."""
    settings = dataclasses.replace(settings, transaction_timeout_ms=60_000)
    run = uuid.uuid4().hex[:6]
    account = f"zo-{run}"
    partition = partition_for(account, settings.partitions)
    produce(settings, codec, *open_and_fund(account, run))  # the zombie's input: two commands
    commands_topic, legs_topic = f"{settings.topic_prefix}.commands", f"{settings.topic_prefix}.legs"

    zombie_consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": consumer_group(settings),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",
            "session.timeout.ms": settings.session_timeout_ms,
            # A paused process stops heartbeating; this one leaves the group once it stops polling.
            "max.poll.interval.ms": settings.session_timeout_ms + 1000,
        }
    )
    assigned = threading.Event()
    zombie_consumer.subscribe([commands_topic, legs_topic], on_assign=lambda consumer, parts: assigned.set())
    deadline = time.monotonic() + 30
    consumed: list[Any] = []
    while time.monotonic() < deadline and len(consumed) < 2:
        message = zombie_consumer.poll(0.2)
        if message is not None and message.error() is None and message.partition() == partition:
            consumed.append(message)
    assert len(consumed) == 2 and assigned.is_set()
    zombie = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "transactional.id": f"zombie-{uuid.uuid4().hex}"}
    )
    zombie.init_transactions(30)
    zombie.begin_transaction()
    # The zombie decided both commands: the account opened and funded, at sequence 2.
    zombie.send_offsets_to_transaction(
        [TopicPartition(commands_topic, partition, consumed[-1].offset() + 1)],
        zombie_consumer.consumer_group_metadata(),
        30,
    )
    # ...and stops polling: its session runs out and the partitions go to the new owner.
    owner = Running(settings).start(ready=False)
    try:
        time.sleep(settings.session_timeout_ms / 1000 + 4)  # the new owner is assigned (and, today, restored)
        state = Account(
            account_id=account,
            currency="USD",
            status=AccountStatus.ACTIVE,
            lower_limit=0,
            upper_limit=2**63 - 1,
            balance=100,
            held=0,
            pending_in=0,
            pending_out=0,
            sequence=2,
            parent_account_id=None,
            metadata={},
            created_at_ms=1,
            updated_at_ms=1,
        )
        zombie.produce(
            f"{settings.topic_prefix}.changelog",
            codec.encode(state),
            changelog_key(Table.ACCOUNTS, account),
            partition=partition,
        )
        zombie.commit_transaction(30)  # the coordinator does not check the group generation here
        assert owner.processor.ready.wait(90)
        produce(
            settings,
            codec,
            commands.Deposit(
                principal=TESTER, command_id=f"{run}-d3", dedup_id="d3", account_id=account, amount=5, currency="USD"
            ),
        )
        results = wait_for_results(settings, codec, {f"{run}-d3"}, timeout_s=60)
        assert owner.failure is None, owner.failure
        (result,) = [result for result in results if result.command_id == f"{run}-d3"]
        assert result.code is None and [(p.sequence, p.balance) for p in result.positions] == [(3, 105)], (
            f"the new owner decided on stale state: {result}"
        )
    finally:
        owner.stop()
        zombie_consumer.close()


class RebalanceBetweenCalls:
    """The loop's real consumer. After a poll() that returned a message, the next consume()
    waits until another member has joined, so that call serves the rebalance."""

    def __init__(self, consumer: Any, joining: Running) -> None:
        self._consumer = consumer
        self._joining = joining
        self.armed = True
        self.polled: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        message = self._consumer.poll(*args, **kwargs)
        if self.armed and message is not None and message.error() is None:
            self.polled = message
        return message

    def consume(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed and self.polled is not None:
            self.armed = False
            self._joining.start(ready=False)
            wait_until(lambda: self._joining.processor._consumer is not None, what="the joining member subscribed")
            time.sleep(3)  # its JoinGroup is pending, a heartbeat told us: this call serves the revoke
        return self._consumer.consume(*args, **kwargs)


def test_a_rebalance_served_while_a_batch_is_taken_never_processes_a_message_twice_or_crashes(
    settings: Settings, codec: Codec
) -> None:
    run = uuid.uuid4().hex[:6]
    second_settings = dataclasses.replace(settings, worker_id=f"joiner-{run}")
    first = Running(settings).start()
    joiner = Running(second_settings)
    try:
        wrapped = RebalanceBetweenCalls(first.processor._consumer, joiner)
        first.processor._consumer = wrapped
        # Accounts on every partition, so the polled message may belong to either worker afterwards.
        workload: list[commands.Command] = []
        for index in range(16):
            workload.extend(open_and_fund(f"rb-{run}-{index}", f"{run}-{index}"))
        Streamer(settings, workload, rate_per_s=20).start().join()
        report = check_ledger(settings, codec, workload, results_timeout_s=90)
        assert wrapped.polled is not None and not wrapped.armed, "the rebalance was not provoked"
        assert first.failure is None, f"the first worker stopped: {first.failure!r}"
        assert joiner.failure is None, f"the joining worker stopped: {joiner.failure!r}"
    finally:
        first.stop()
        if joiner.thread.is_alive():
            joiner.stop()
    assert report.problems() == []


def test_a_worker_started_while_the_broker_does_not_answer_waits_for_it(settings: Settings) -> None:
    """A worker (re)started while the cluster does not answer (the controller away, a broker
    frozen) must wait for it like any outage (defect: its start-up topic check raised the
    admin client's timeout and the worker exited again, once per restart)."""
    cluster = kafka.cluster_layout(name="test", brokers=1, base_port=TEST_KAFKA_PORT)
    pid = int(cluster.nodes[0].pid_file.read_text().strip())
    running = Running(dataclasses.replace(settings, worker_id=f"frozen-start-{uuid.uuid4().hex[:6]}"))
    # `streamwallet topics create` (and every test's set-up) in the same outage: it raised the
    # admin client's timeout ("Failed while waiting for controller") instead of asking again.
    other = Topology(prefix=f"frozen-{uuid.uuid4().hex[:8]}", partitions=2)
    created: list[list[str]] = []
    creator = threading.Thread(target=lambda: created.append(ensure_topics(kafka_config(settings), other)))
    os.kill(pid, signal.SIGSTOP)
    try:
        running.start(ready=False)
        creator.start()
        time.sleep(ADMIN_TIMEOUT_S + 5)  # past the admin client's own timeout
        assert running.failure is None, f"the worker gave up while the broker was away: {running.failure!r}"
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        assert running.processor.ready.wait(120), (
            f"the worker did not become ready: {running.failure!r}; its thread is at\n{running.where()}"
        )
        creator.join(UNANSWERED_RETRY_S_MAX + ADMIN_TIMEOUT_S)  # its budget, and one ask in flight
        assert created and sorted(created[0]) == sorted(spec.name for spec in other.all()), "topics not created"
    finally:
        running.stop()


def test_two_workers_started_with_one_worker_id_stop_one_of_them_saying_why(settings: Settings, tmp_path: Any) -> None:
    """A second instance with this worker id (a copy-pasted deployment) takes the first's
    place in the group; the two would fence each other's consumer and producer forever. The
    bound in streams/renewals.py stops one of them, naming the worker id. This is also what
    tells a twin's fence from broker trouble there: a fence that follows the consumer's own
    lost session (librdkafka #3437) is not counted, and a twin's never does."""
    worker_id = f"twin-{uuid.uuid4().hex[:6]}"
    first = Running(dataclasses.replace(settings, worker_id=worker_id)).start()
    # Its own RocksDB (a second process on another machine would have its own disk).
    second = Running(dataclasses.replace(settings, worker_id=worker_id, data_dir=tmp_path / "twin")).start(ready=False)
    try:
        wait_until(lambda: first.failure is not None or second.failure is not None, 240, "one of the twins stopping")
        stopped = first.failure or second.failure
        assert isinstance(stopped, WorkerFenced), repr(stopped)
        assert f"another instance running with worker id {worker_id}" in str(stopped)
    finally:
        for running in (first, second):
            if running.failure is None:
                running.stop()
