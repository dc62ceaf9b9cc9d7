"""The query service's wait for min_seq: woken by the sink's batch, never by polling, so a
lost wake-up would show as a read that times out."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

from bench.event_workload import generate
from codec import Codec
from foundation.settings import Settings
from sinks import views
from sinks.events import SMALL_BATCH_EVENTS, EventSink
from sinks.service import QueryService
from tests.unit.sinks.support import PARTITIONS, messages

READ_WAIT_MS = 3000


def service_on(clickhouse_dsn: str, database: str, **overrides: Any) -> QueryService:
    settings = Settings(
        partitions=PARTITIONS,
        clickhouse_dsn=clickhouse_dsn,
        clickhouse_database=database,
        read_wait_ms_max=READ_WAIT_MS,
        **overrides,
    )
    service = QueryService(settings)
    service._loop = asyncio.get_running_loop()  # what start() does, without Kafka
    return service


async def test_a_read_waiting_for_min_seq_is_woken_by_the_batch_that_holds_it(
    clickhouse: Any, clickhouse_dsn: str, database: str
) -> None:
    service = service_on(clickhouse_dsn, database)
    codec = Codec()
    events = generate(9, accounts=6, events=600)
    batches = messages(events, codec)
    sink = EventSink(service.settings, clickhouse, database=database, codec=codec, on_written=service._notify)
    rng = random.Random(5)
    written = 0
    try:
        while written < len(batches):
            size = rng.randint(1, 40)
            chunk = batches[written : written + size]
            chunk_events = events[written : written + size]
            written += size
            target = rng.choice(chunk_events)
            # The batch is written on another thread at a random moment around the read's
            # registration: before, during or after its first look.
            delay_s = rng.choice([0.0, 0.001, 0.003, 0.01])
            writer = threading.Timer(delay_s, sink.write, args=(chunk,))
            started = time.monotonic()
            writer.start()
            reached, record = await service.reached(target.account_id, target.sequence)
            waited_s = time.monotonic() - started
            writer.join()
            assert reached and record is not None and record["sequence"] >= target.sequence
            assert waited_s < READ_WAIT_MS / 1000 / 2, "woken late: a lost wake-up"
            # Whether it came from the view or from the row the sink wrote: what the view says now.
            assert record == views.balance(clickhouse, database, target.account_id)
        assert service.reads_waited > 0, "some reads must have found the view behind"
        assert 0 < service.reads_answered_by_sink <= service.reads_waited, "woken reads answer with the sink's row"
        assert service.reads_not_yet == 0
        assert service.reads_waiting == 0 and not service._waiters
    finally:
        service.executor.shutdown(wait=True)


async def test_a_read_woken_by_a_batch_clickhouse_decoded_looks_in_the_view_again(
    clickhouse: Any, clickhouse_dsn: str, database: str
) -> None:
    """A large batch goes through the incoming table, decoded by ClickHouse: the sink holds
    no row to hand the read, which then reads the view."""
    service = service_on(clickhouse_dsn, database)
    codec = Codec()
    events = generate(13, accounts=3, events=SMALL_BATCH_EVENTS * 2)
    sink = EventSink(service.settings, clickhouse, database=database, codec=codec, on_written=service._notify)
    target = events[-1]
    try:
        writer = threading.Timer(0.2, sink.write, args=(messages(events, codec),))
        writer.start()
        reached, record = await service.reached(target.account_id, target.sequence)
        writer.join()
        assert reached and record == views.balance(clickhouse, database, target.account_id)
        assert record is not None and record["sequence"] == target.sequence
        assert service.reads_waited == 1 and service.reads_answered_by_sink == 0
    finally:
        service.executor.shutdown(wait=True)


async def test_a_read_ahead_of_the_view_gets_not_yet_after_the_bound(
    clickhouse: Any, clickhouse_dsn: str, database: str
) -> None:
    service = service_on(clickhouse_dsn, database)
    # The bound is longer than a first look in the view takes on a busy machine (a full unit
    # run once took over 200 ms there, right after another test's parts were written), so the
    # read does wait before its answer.
    service.settings = Settings(
        partitions=PARTITIONS, clickhouse_dsn=clickhouse_dsn, clickhouse_database=database, read_wait_ms_max=600
    )
    codec = Codec()
    events = generate(9, accounts=2, events=5)
    EventSink(service.settings, clickhouse, database=database, codec=codec).write(messages(events, codec))
    try:
        started = time.monotonic()
        reached, record = await service.reached(events[0].account_id, 10**6)
        assert not reached and record is not None
        assert 0.6 <= time.monotonic() - started < 2.0
        assert service.reads_not_yet == 1 and service.reads_waited == 1
        reached, record = await service.reached("nobody", 1)
        assert not reached and record is None
    finally:
        service.executor.shutdown(wait=True)


async def test_a_read_only_service_finds_a_write_no_sink_of_its_own_announces(
    clickhouse: Any, clickhouse_dsn: str, database: str
) -> None:
    """A read-only service (its store written by another process) has no sink to wake its
    readers: a read waiting for min_seq must still see the write when it lands."""
    service = service_on(clickhouse_dsn, database, query_read_only=True)
    codec = Codec()
    events = generate(11, accounts=1, events=6)
    other_writer = EventSink(service.settings, clickhouse, database=database, codec=codec)  # wakes nobody
    other_writer.write(messages(events[:3], codec))
    try:
        writer = threading.Timer(0.3, other_writer.write, args=(messages(events[3:], codec),))
        started = time.monotonic()
        writer.start()
        reached, record = await service.reached(events[-1].account_id, events[-1].sequence)
        writer.join()
        assert reached and record is not None and record["sequence"] == events[-1].sequence
        assert time.monotonic() - started < READ_WAIT_MS / 1000 / 2
        assert service.reads_waited == 1 and service.reads_not_yet == 0
    finally:
        service.executor.shutdown(wait=True)
