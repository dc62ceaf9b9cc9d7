"""The sink's loop over a real broker: the next batch is consumed, decoded and handed to the
reads waiting for it while the batch before it is still being inserted, and so is whatever
arrives after it meanwhile; nothing is advanced past what is written, and batches are written
in the order consumed."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.event_workload import generate
from codec import Codec
from foundation.clients import kafka_config
from foundation.settings import Settings
from ledger.events import AccountEvent
from sinks import views
from sinks.events import SMALL_BATCH_EVENTS
from tests.conftest import fresh_settings
from tests.unit.sinks.test_read_your_writes import READ_WAIT_MS, SlowInserts, service_on, wired_sink

HOLD_S = 30.0  # the first batch's inserts wait at most this long for the test
TRICKLE_EVENTS = 300
TRICKLE_INTERVAL_S = 0.008  # 300 events over ~3 s, past the sink's 1 s progress interval


def produce(settings: Settings, events: list[AccountEvent], codec: Codec) -> None:
    producer = Producer({**kafka_config(settings), "acks": "all", "partitioner": "murmur2_random"})
    for event in events:
        producer.produce(settings.topology().events.name, codec.encode(event), event.account_id.encode())
    if producer.flush(10) != 0:
        raise RuntimeError("the events were not acknowledged")


async def test_a_batch_answers_a_balance_read_while_the_batch_before_it_is_inserted(
    kafka_bootstrap: str, clickhouse: Any, clickhouse_dsn: str, database: str, tmp_path: Path
) -> None:
    service = service_on(clickhouse_dsn, database)
    service.settings = dataclasses.replace(
        fresh_settings(kafka_bootstrap, tmp_path),
        clickhouse_dsn=clickhouse_dsn,
        clickhouse_database=database,
        read_wait_ms_max=READ_WAIT_MS,
    )
    codec = Codec()
    first = generate(29, accounts=1, events=3, prefix="first")
    second = generate(31, accounts=1, events=3, prefix="second")
    # More than a batch of a few events (SMALL_BATCH_EVENTS) joins the second batch: decoded
    # by the codec as it arrives, written with it.
    third = generate(37, accounts=5, events=SMALL_BATCH_EVENTS + 36, prefix="third")
    slow = SlowInserts(clickhouse, hold_s=HOLD_S)
    sink = wired_sink(service, slow, database, codec)
    stop = threading.Event()
    runner = threading.Thread(target=sink.run, args=(stop,), name="test-sink", daemon=True)
    try:
        produce(service.settings, first, codec)
        runner.start()
        # The first batch is received: its rows answer the account's own read, its inserts wait.
        reached, record = await service.reached(first[-1].account_id, first[-1].sequence, row_suffices=True)
        assert reached and record is not None and record["sequence"] == first[-1].sequence
        produce(service.settings, second, codec)
        reached, record = await service.reached(second[-1].account_id, second[-1].sequence, row_suffices=True)
        assert reached and record is not None and record["sequence"] == second[-1].sequence, (
            "the second batch was not consumed while the first was being inserted"
        )
        produce(service.settings, third, codec)
        reached, record = await service.reached(third[-1].account_id, third[-1].sequence, row_suffices=True)
        assert reached and record is not None and record["sequence"] == third[-1].sequence, (
            "what arrived after the second batch waited for the first batch's inserts"
        )
        assert not slow.release.is_set()
        assert not any(sink.metrics.positions.values()), "a position advanced past what is written"
        slow.release.set()
        newest = {event.account_id: event for event in (*first, *second, *third)}
        for event in newest.values():  # the view holds them, as their rows said
            reached, record = await service.reached(event.account_id, event.sequence)
            assert reached and record == views.balance(clickhouse, database, event.account_id)
            assert record is not None and record["sequence"] == event.sequence
        stop.set()
        runner.join(30)
        assert not runner.is_alive()
        assert sum(sink.metrics.positions.values()) == len(first) + len(second) + len(third)
        assert views.progress(clickhouse, database) == {
            partition: offset for partition, offset in sink.metrics.positions.items() if offset
        }
    finally:
        slow.release.set()
        stop.set()
        runner.join(30)
        service.executor.shutdown(wait=True)


async def test_a_steady_trickle_of_events_is_all_written_and_its_offsets_committed(
    kafka_bootstrap: str, clickhouse: Any, clickhouse_dsn: str, database: str, tmp_path: Path
) -> None:
    """Lone committed events, one every few milliseconds, for longer than the progress interval: the sink
    keeps consuming while it writes, stores its progress and commits its offsets to Kafka, and
    writes every event."""
    service = service_on(clickhouse_dsn, database)
    service.settings = dataclasses.replace(
        fresh_settings(kafka_bootstrap, tmp_path), clickhouse_dsn=clickhouse_dsn, clickhouse_database=database
    )
    settings = service.settings
    codec = Codec()
    events = generate(41, accounts=10, events=TRICKLE_EVENTS, prefix="trickle")
    sink = wired_sink(service, clickhouse, database, codec)
    stop = threading.Event()
    runner = threading.Thread(target=sink.run, args=(stop,), name="test-sink", daemon=True)
    # Each event in a transaction of its own, as a ledger worker commits them: a commit marker
    # follows each one.
    producer = Producer(
        {**kafka_config(settings), "partitioner": "murmur2_random", "transactional.id": f"{settings.topic_prefix}-tx"}
    )
    producer.init_transactions(10)
    try:
        runner.start()
        for event in events:
            producer.begin_transaction()
            producer.produce(settings.topology().events.name, codec.encode(event), event.account_id.encode())
            producer.commit_transaction(10)
            await asyncio.sleep(TRICKLE_INTERVAL_S)
        offsets = 2 * len(events)  # each event, then its transaction's commit marker
        deadline = time.monotonic() + 30
        while sum(sink.metrics.positions.values()) < offsets and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert sum(sink.metrics.positions.values()) == offsets, f"the sink stopped at {sink.metrics.positions}"
        newest = {event.account_id: event for event in events}
        for event in newest.values():
            state = views.balance(clickhouse, database, event.account_id)
            assert state is not None and state["sequence"] == event.sequence
        stop.set()
        runner.join(30)
        assert not runner.is_alive(), "the sink did not stop"
        positions = {partition: offset for partition, offset in sink.metrics.positions.items() if offset}
        assert views.progress(clickhouse, database) == positions
        group = Consumer({**kafka_config(settings), "group.id": f"{settings.topic_prefix}.sink"})
        try:
            committed = group.committed(
                [TopicPartition(settings.topology().events.name, partition) for partition in positions], timeout=10
            )
        finally:
            group.close()
        assert {entry.partition: entry.offset for entry in committed} == positions
    finally:
        stop.set()
        runner.join(30)
        service.executor.shutdown(wait=True)
