"""Ticks for real: a worker writes a `Tick` only to the partitions on which something waits
for time. Idle partitions get none (such a tick would change nothing but the clock, and cost
two transactions a partition more); a hold placed on an idle partition still expires there,
moved by the ticks its expiry brought, and the ticks stop once nothing waits again."""

from __future__ import annotations

import collections
import time
import uuid

import pytest
from confluent_kafka import Producer

from codec import Codec
from foundation.settings import Settings
from ledger import commands, legs
from ledger.events import AccountEvent, EventKind, ResultStatus
from tests.principals import TESTER
from tests.support import read_decoded, read_topic, running_processor
from topologies import partition_for

pytestmark = pytest.mark.kafka

HOLD_TTL_MS = 1_500
EXPIRY_WAIT_S = 30.0


def ticks_per_partition(settings: Settings, codec: Codec) -> collections.Counter[int]:
    legs_topic = settings.topology().legs.name
    return collections.Counter(
        message.partition()
        for message in read_topic(settings.bootstrap_servers, legs_topic)
        if isinstance(codec.decode(message.value()), legs.Tick)
    )


def test_a_worker_ticks_only_where_something_waits_for_time(settings: Settings) -> None:
    codec = Codec()
    account = f"tick-{uuid.uuid4().hex[:6]}"
    partition = partition_for(account, settings.partitions)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
    topology = settings.topology()
    with running_processor(settings) as processor:
        time.sleep(4 * settings.tick_interval_ms / 1000)  # four tick intervals with nothing waiting
        assert ticks_per_partition(settings, codec) == collections.Counter()  # no partition was ticked

        for command in (
            commands.OpenAccount(
                principal=TESTER,
                owner=TESTER.principal_id,
                command_id="open",
                dedup_id="open",
                account_id=account,
                currency="USD",
            ),
            commands.Deposit(
                principal=TESTER, command_id="fund", dedup_id="fund", account_id=account, amount=10, currency="USD"
            ),
            commands.PlaceHold(
                principal=TESTER,
                command_id="hold",
                dedup_id="hold",
                account_id=account,
                hold_id="h",
                amount=4,
                currency="USD",
                ttl_ms=HOLD_TTL_MS,
            ),
        ):
            producer.produce(topology.commands.name, codec.encode(command), account.encode())
        producer.flush(10)

        # Nothing else reaches the account's partition: only a tick can expire the hold there.
        deadline = time.monotonic() + EXPIRY_WAIT_S
        while True:
            events: list[AccountEvent] = read_decoded(settings.bootstrap_servers, topology.events.name, codec)
            kinds = [event.kind for event in events if event.account_id == account]
            if EventKind.HOLD_EXPIRED in kinds:
                break
            assert time.monotonic() < deadline, f"the hold did not expire on its idle partition: {kinds}"
            time.sleep(0.5)
        assert processor.metrics.dead_letters == 0
        results = {
            result.command_id: result
            for result in read_decoded(settings.bootstrap_servers, topology.results.name, codec)
        }
        assert all(results[name].status is ResultStatus.ACCEPTED for name in ("open", "fund", "hold")), results

        ticked = ticks_per_partition(settings, codec)
        assert set(ticked) == {partition}, ticked  # only the hold's partition
        time.sleep(4 * settings.tick_interval_ms / 1000)  # nothing waits for time there any more
        assert ticks_per_partition(settings, codec) == ticked, "ticks went on once nothing waited"
