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

from bench.workloads import Ids, make_accounts, mixed, openings
from codec import Codec
from foundation.settings import Settings
from ledger import commands
from ledger.events import EventKind
from streamwallet.stack import Stack
from tests.checker import check_ledger
from tests.principals import TESTER

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
                principal=TESTER,
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

        report = check_ledger(settings, codec, workload, settle_s=3 * settings.tick_interval_ms / 1000 + 3)
        assert all(worker.alive for worker in workers), "a worker stopped: see its log"
    finally:
        stack.stop_all()
    for worker in workers:
        assert "InvariantViolation" not in worker.tail(10**9), f"{worker.name} hit an invariant violation"

    print(f"\n{report.summary()}")
    assert report.problems() == []

    # The workload did what it says: cross-partition flows and batches happened, and failed too.
    kinds = collections.Counter(event.kind for event in report.events)
    for kind in (
        EventKind.TRANSFER_SETTLED,
        EventKind.BATCH_COMMITTED,
        EventKind.HOLD_EXPIRED,
        EventKind.CAPTURE_SETTLED,
        EventKind.TRANSFER_REFUNDED,
        EventKind.BATCH_RELEASED,
    ):
        assert kinds[kind] > 0, kind
