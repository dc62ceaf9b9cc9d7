"""Exactly-once across partitions, under fire: a randomized workload of every command
(same- and cross-partition transfers, batches over 2-5 partitions, holds captured,
voided and expiring, duplicates, invalid commands) through two workers, while workers
are killed with kill -9 at random moments and restarted, sometimes only after their
partitions have moved to the other worker. Then, from the topics alone:

* every command has exactly one final result, and duplicates got the original's;
* per-currency conservation: final balances equal deposits minus withdrawals;
* no account was outside its limits at any sequence; per-account sequences are gap-free;
* the events topic replayed gives exactly the state in the shards' changelog;
* nothing is left in flight (transfers, prepared legs, batches), no hold is open past its expiry.

STREAMWALLET_SOAK=1 runs a longer variant.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer

from bench.topics import changelog_state
from bench.workloads import Ids, make_accounts, mixed, openings
from codec import Codec
from foundation.settings import Settings
from ledger import commands
from ledger.accounts import Account, Hold, HoldStatus
from ledger.events import AccountEvent, CommandResult, EventKind
from ledger.state import ShardMeta, Table
from streamwallet.stack import Stack
from tests.support import outcome, read_decoded

pytestmark = pytest.mark.kafka

SOAK = os.environ.get("STREAMWALLET_SOAK") == "1"
COMMANDS = 100_000 if SOAK else 20_000
ACCOUNTS = 300
RATE_PER_S = 1_500
KILLS = 12 if SOAK else 6


def test_randomized_cross_partition_workload_with_kills(settings: Settings, tmp_path: Any) -> None:
    codec = Codec()
    rng = random.Random(5)
    stack = Stack(settings, tmp_path)
    workers = [stack.worker(1).start(), stack.worker(2).start()]
    try:
        for worker in workers:
            worker.wait_ready()
        run = uuid.uuid4().hex[:6]
        ids = Ids(run)
        accounts = make_accounts(f"x{run}", ACCOUNTS, partitions=settings.partitions)
        opening = openings(accounts, ids, rng=rng)
        funding = [
            commands.Deposit(
                command_id=ids(),
                dedup_id="seed",
                account_id=account,
                amount=200_000,
                currency=accounts.currency[account],
            )
            for account in accounts.ids
        ]
        workload = opening + funding + mixed(accounts, ids, rng, COMMANDS)
        producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "partitioner": "murmur2_random",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
            }
        )
        topic = f"{settings.topic_prefix}.commands"

        def stream() -> None:
            for index, command in enumerate(workload):
                producer.produce(topic, codec.encode(command), command.routing_key.encode())
                if index % 100 == 99:
                    producer.poll(0)
                    time.sleep(100 / RATE_PER_S)
            producer.flush(60)

        streaming = threading.Thread(target=stream)
        streaming.start()
        for kill in range(KILLS):
            time.sleep(rng.uniform(0.5, 2.0))
            victim = rng.choice(workers)
            victim.kill()
            if kill % 3 == 2:
                # Stay down past the session timeout: the partitions move to the other worker
                # (a rebalance), and move back when this one returns.
                time.sleep(settings.session_timeout_ms / 1000 + 2)
            victim.start()
            victim.wait_ready()
        streaming.join()

        results: list[CommandResult] = []
        deadline = time.monotonic() + 180
        wanted = {command.command_id for command in workload}
        while time.monotonic() < deadline:
            results = read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.results", codec)
            if wanted <= {result.command_id for result in results}:
                break
            time.sleep(1)
        time.sleep(3 * settings.tick_interval_ms / 1000 + 3)  # short holds expire, ticks run
        assert all(worker.alive for worker in workers), "a worker stopped: see its log"
    finally:
        stack.stop_all()
    for worker in workers:
        assert "InvariantViolation" not in worker.tail(10**9), f"{worker.name} hit an invariant violation"

    # Exactly one final result per command; a duplicate gets its original's.
    counts = collections.Counter(result.command_id for result in results)
    assert [command_id for command_id in wanted if counts[command_id] != 1] == []
    by_id = {result.command_id: result for result in results}
    for result in results:
        if result.replayed:
            original = by_id[result.original_command_id]
            assert outcome(original)[:2] == outcome(result)[:2], result.command_id

    events: list[AccountEvent] = read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.events", codec)
    history: dict[str, list[AccountEvent]] = collections.defaultdict(list)
    external: dict[str, int] = collections.defaultdict(int)
    for event in events:
        history[event.account_id].append(event)
        if event.kind in (EventKind.DEPOSITED, EventKind.WITHDRAWN):
            external[event.currency] += event.amount
        # Within limits at every sequence.
        assert event.lower_limit <= event.balance - event.held, event
        assert event.balance + event.pending_in + event.pending_out <= event.upper_limit, event
        assert event.available == event.balance - event.held
    for account, account_events in history.items():
        assert [event.sequence for event in account_events] == list(range(1, len(account_events) + 1)), account
        assert sum(event.amount for event in account_events) == account_events[-1].balance, account
    final = {account: account_events[-1] for account, account_events in history.items()}

    # Conservation per currency, with nothing in flight at the end.
    totals: dict[str, int] = collections.defaultdict(int)
    for event in final.values():
        assert (event.pending_in, event.pending_out) == (0, 0), event
        totals[event.currency] += event.balance
    assert dict(totals) == {currency: amount for currency, amount in external.items() if amount or currency in totals}

    # The events replayed are exactly the shards' tables; nothing left half done.
    tables = changelog_state(settings, codec)
    stored: dict[str, Account] = tables[Table.ACCOUNTS]
    assert set(stored) == set(final)
    for account_id, stored_account in stored.items():
        event = final[account_id]
        assert (
            stored_account.sequence,
            stored_account.balance,
            stored_account.held,
            stored_account.status,
            stored_account.lower_limit,
            stored_account.upper_limit,
        ) == (event.sequence, event.balance, event.held, event.status, event.lower_limit, event.upper_limit), account_id
    assert tables[Table.OUTGOING] == {}
    assert tables[Table.PREPARED] == {}
    assert tables[Table.BATCHES] == {}
    clocks = [meta.clock_ms for meta in tables[Table.META].values() if isinstance(meta, ShardMeta)]
    oldest_clock = min(clocks)
    holds: dict[str, Hold] = tables[Table.HOLDS]
    overdue = [hold for hold in holds.values() if hold.status is HoldStatus.OPEN and hold.expires_at_ms <= oldest_clock]
    assert overdue == []
    for account_id, stored_account in stored.items():
        open_holds = sum(h.amount for h in holds.values() if h.account_id == account_id and h.status is HoldStatus.OPEN)
        assert stored_account.held == open_holds, account_id

    # The workload did what it says: cross-partition flows and batches happened, and failed too.
    kinds = collections.Counter(event.kind for event in events)
    codes = collections.Counter(outcome(result)[1] for result in results)
    print(f"\n{len(results)} results {dict(codes)}\n{len(events)} events {dict(kinds)}")
    for kind in (
        EventKind.TRANSFER_SETTLED,
        EventKind.BATCH_COMMITTED,
        EventKind.HOLD_EXPIRED,
        EventKind.CAPTURE_SETTLED,
        EventKind.TRANSFER_REFUNDED,
        EventKind.BATCH_RELEASED,
    ):
        assert kinds[kind] > 0, kind
