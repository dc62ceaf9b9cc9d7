"""Where `bench.query`'s events come from: the ledger itself, or a generator writing
straight to the events topic.

* `through_ledger`: ledger workers decide a mix of commands (deposits, withdrawals,
  transfers within and across partitions) sent in bundles, so the topic holds what a
  deployment's topic holds: transactional batches with their commit markers, each
  account's events in sequence with their hash chain, the settles of cross-partition
  transfers. The events are then read back (read_committed) to learn what the views must
  hold. The workers are stopped before the sink is timed: they would share its cores.
* `straight_to_topic`: the test suite's seeded generator (`bench/event_workload.py`),
  produced without transactions: faster to load, and the figures before 2026-11-29 used it.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from bench.event_workload import Workload
from bench.figures import require_accepted
from bench.harness import Driver
from bench.principal import BENCH_PRINCIPAL
from bench.workloads import CURRENCIES, Accounts, Ids, deposits_to_each, make_accounts, openings, transfer
from codec import Codec
from foundation.consuming import take_available
from foundation.producing import produce_when_room
from foundation.settings import Settings
from ledger import commands
from ledger.events import AccountEvent
from streamwallet.stack import Stack

PRODUCE_PROGRESS_EVERY = 100_000
ROOTS_PER_CURRENCY = 3  # accounts every other account of its currency has as parent (the roll-up's roots)
FUNDING = 10**12  # no debit of the mix can exceed it: every command is accepted
CHUNK_COMMANDS = 20_000  # sent per closed-loop run; events are counted between runs
BUNDLE_SIZE = 500
EVENTS_PER_COMMAND_GUESS = 2  # the mix below averages about this; the count is read, not guessed
READ_BACK_IDLE_S = 3.0  # the read-back ends when the topic gave nothing new for this long


@dataclasses.dataclass
class Loaded:
    events: int
    accounts: dict[str, tuple[int, int, int]]  # account -> (last sequence, first time, last time)
    seconds: float
    roots: list[str]  # accounts to ask for a hierarchy roll-up


def straight_to_topic(settings: Settings, *, events: int, accounts: int, seed: int) -> Loaded:
    codec = Codec()
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
        }
    )
    topic = f"{settings.topic_prefix}.events"
    seen: dict[str, tuple[int, int, int]] = {}
    started = time.monotonic()
    count = 0
    for event in Workload(seed, accounts=accounts, partitions=settings.partitions, prefix="bench").events(events):
        produce_when_room(producer, topic, codec.encode(event), event.account_id.encode(), wait_s=0.05)
        _remember(seen, event)
        count += 1
        if count % PRODUCE_PROGRESS_EVERY == 0:
            producer.poll(0)
            print(f"  produced {count:,} events ({time.monotonic() - started:.0f}s)", flush=True)
    producer.flush(120)
    roots = [f"bench-{index:05d}" for index in range(6)]  # the generator's roots (event_workload.py)
    return Loaded(events=count, accounts=seen, seconds=time.monotonic() - started, roots=roots)


def through_ledger(settings: Settings, run_dir: Path, *, events: int, accounts: int, workers: int, seed: int) -> Loaded:
    """At least `events` events decided by `workers` ledger workers, then read back."""
    stack = Stack(settings, run_dir / "ledger")
    processes = [stack.worker(index).start() for index in range(1, workers + 1)]
    reader = _EventReader(settings)
    started = time.monotonic()
    try:
        for process in processes:
            process.wait_ready()
        driver = Driver(settings)
        rng = random.Random(seed)
        ids = Ids(f"q{uuid.uuid4().hex[:6]}")
        opened = make_accounts("benchl", accounts, partitions=settings.partitions)
        roots = opened.ids[: ROOTS_PER_CURRENCY * len(CURRENCIES)]
        opening = openings(opened, ids, parents=_parents(opened, roots))
        require_accepted(driver.run("open", opening, bundle_size=BUNDLE_SIZE))
        funding = deposits_to_each(opened, ids, amount=FUNDING, dedup_id="fund")
        require_accepted(driver.run("fund", funding, bundle_size=BUNDLE_SIZE))
        mix = _Mix(opened, ids, rng)
        decided = 2 * accounts
        while decided < events:
            chunk = mix.take(min(CHUNK_COMMANDS, (events - decided) // EVENTS_PER_COMMAND_GUESS + 1))
            run = driver.run("mix", chunk, bundle_size=BUNDLE_SIZE)
            require_accepted(run)
            decided = reader.read_available()
            print(
                f"  {decided:,} events decided by the ledger ({time.monotonic() - started:.0f}s, "
                f"{run.throughput:,.0f} commands/s)",
                flush=True,
            )
        driver.close()
        reader.read_until_idle()  # settles of the last cross-partition transfers
        return Loaded(events=reader.count, accounts=reader.seen, seconds=time.monotonic() - started, roots=roots)
    finally:
        reader.close()
        stack.stop_all()


def _remember(seen: dict[str, tuple[int, int, int]], event: AccountEvent) -> None:
    first = seen.get(event.account_id, (0, event.occurred_at_ms, 0))[1]
    seen[event.account_id] = (event.sequence, first, event.occurred_at_ms)


def _parents(accounts: Accounts, roots: list[str]) -> dict[str, str]:
    """Each account but the roots under a root of its currency."""
    by_currency = {currency: [root for root in roots if accounts.currency[root] == currency] for currency in CURRENCIES}
    return {
        account: by_currency[accounts.currency[account]][index % ROOTS_PER_CURRENCY]
        for index, account in enumerate(accounts.ids)
        if account not in roots
    }


class _Mix:
    """Deposits 15%, withdrawals 10%, transfers within a partition 45% and across
    partitions 30%, of amounts no funded account runs out of. Accounts are grouped once:
    `bench.workloads.pair` scans every account per transfer, too slow for 10,000."""

    def __init__(self, accounts: Accounts, ids: Ids, rng: random.Random) -> None:
        self.accounts = accounts
        self.ids = ids
        self.rng = rng
        self.same: dict[tuple[int, str], list[str]] = {}
        self.by_currency: dict[str, list[str]] = {}
        for account in accounts.ids:
            currency = accounts.currency[account]
            self.same.setdefault((accounts.partition[account], currency), []).append(account)
            self.by_currency.setdefault(currency, []).append(account)
        lonely = [group for group in (*self.same.values(), *self.by_currency.values()) if len(group) < 2]
        if lonely:
            raise ValueError(f"too few accounts for transfers within each partition: {lonely[0]} is alone")

    def take(self, count: int) -> list[commands.Command]:
        return [self._one() for _ in range(count)]

    def _one(self) -> commands.Command:
        rng, accounts = self.rng, self.accounts
        account = rng.choice(accounts.ids)
        currency = accounts.currency[account]
        roll = rng.random()
        if roll < 0.25:  # a deposit (15%) or a withdrawal (10%)
            kind, most = (commands.Deposit, 20_000) if roll < 0.15 else (commands.Withdraw, 1_000)
            return kind(
                principal=BENCH_PRINCIPAL,
                command_id=self.ids(),
                dedup_id=self.ids("d"),
                account_id=account,
                amount=rng.randint(1, most),
                currency=currency,
            )
        group = self.same[(accounts.partition[account], currency)] if roll < 0.70 else self.by_currency[currency]
        target = rng.choice(group)
        while target == account:  # every group holds more than one account (checked when grouped)
            target = rng.choice(group)
        return transfer(self.ids, account, target, rng.randint(1, 1_000), currency)


class _EventReader:
    """Reads the events topic from the start, as the sink will (read_committed)."""

    def __init__(self, settings: Settings) -> None:
        self.codec = Codec()
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "group.id": f"{settings.topic_prefix}.bench-read-back",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        topic = f"{settings.topic_prefix}.events"
        self.consumer.assign([TopicPartition(topic, partition, 0) for partition in range(settings.partitions)])
        self.seen: dict[str, tuple[int, int, int]] = {}
        self.count = 0

    def read_available(self) -> int:
        while messages := take_available(self.consumer, 10_000, 0.5):
            self._take(messages)
        return self.count

    def read_until_idle(self) -> None:
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < READ_BACK_IDLE_S:
            messages = take_available(self.consumer, 10_000, 0.2)
            if messages:
                self._take(messages)
                idle_since = time.monotonic()

    def _take(self, messages: list[Message]) -> None:
        for message in messages:
            if message.error() is not None:
                raise RuntimeError(f"reading the events back: {message.error()}")
            value = message.value()
            event = None if value is None else self.codec.decode(value)
            if not isinstance(event, AccountEvent):
                raise TypeError(f"the events topic holds a {type(event).__name__}")
            _remember(self.seen, event)
            self.count += 1

    def close(self) -> None:
        self.consumer.close()
