"""The query side on real parts: the events sink killed (kill -9) while it writes, and
restarted; every answer of the query service against values folded from the events.

The events are written straight to the events topic (the sink's input), transactionally,
with an aborted transaction and an undecodable message among them: the test controls the
data, and no worker is needed. The query service runs as its own process (it owns the
chDB folder; this pytest process must not open one: see tests/unit/sinks/conftest.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from bench.event_workload import generate
from codec import Codec
from codec.deadletter import DeadLetter
from foundation.settings import Settings
from ledger.events import AccountEvent
from streamwallet.stack import Stack
from tests.support import read_topic
from tests.unit.sinks import oracle

pytestmark = pytest.mark.kafka

TRANSACTION_EVENTS = 1500
KILLS = 4
PROGRESS_WAIT_S = 20.0
CATCH_UP_WAIT_S = 300.0


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def produce_transactionally(
    settings: Settings, events: list[AccountEvent], *, abort: list[AccountEvent], garbage: bool
) -> None:
    """Committed transactions of the events; an aborted transaction of `abort` in the middle,
    and with `garbage` an undecodable message."""
    codec = Codec()
    topic = f"{settings.topic_prefix}.events"
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "partitioner": "murmur2_random",
            "transactional.id": f"{settings.topic_prefix}.test-events-{uuid.uuid4().hex[:6]}",
            "linger.ms": 5,
        }
    )
    producer.init_transactions()
    for start in range(0, len(events), TRANSACTION_EVENTS):
        producer.begin_transaction()
        for event in events[start : start + TRANSACTION_EVENTS]:
            producer.produce(topic, codec.encode(event), event.account_id.encode())
        if garbage and start == TRANSACTION_EVENTS:
            producer.produce(topic, b"not an account event", b"garbage")
        producer.commit_transaction()
        if abort and start == 2 * TRANSACTION_EVENTS:
            producer.begin_transaction()
            for event in abort:
                producer.produce(topic, codec.encode(event), event.account_id.encode())
            producer.flush()
            producer.abort_transaction()


def check_views(settings: Settings, events: list[AccountEvent]) -> None:
    """Every account's balance and full history (each sequence once, in order, with the
    running balance) and the per-currency totals, as the query service answers them."""
    url = settings.query_url
    histories = oracle.by_account(events)
    for account_id, history in histories.items():
        status, body = get(f"{url}/accounts/{account_id}?min_seq={history[-1].sequence}")
        assert status == 200, body
        account = body["account"]
        account.pop("updated_at")
        assert account == oracle.state(history[-1])
        status, page = get(f"{url}/accounts/{account_id}/history?after=0&limit=1000")
        assert status == 200 and page["next_cursor"] is None, page
        got = [(event["sequence"], event["balance"]) for event in page["events"]]
        expected = list(zip(range(1, len(history) + 1), oracle.running_balances(history), strict=True))
        assert got == expected, account_id
    status, totals = get(f"{url}/totals?cut=none")
    assert status == 200
    rows = {row.pop("currency"): row for row in totals["currencies"]}
    assert rows == oracle.totals(events, settings.partitions)


def written(settings: Settings) -> int:
    status, metrics = get(f"{settings.query_url}/metrics.json")
    assert status == 200, metrics
    return sum(metrics["sink"]["positions"].values())


def wait_for_progress(settings: Settings) -> None:
    """Until this life of the sink has written a batch (on a loaded machine its first batch
    can take longer than the random pause before a kill), or the bound passes (nothing left)."""
    started_at = written(settings)
    deadline = time.monotonic() + PROGRESS_WAIT_S
    while written(settings) <= started_at and time.monotonic() < deadline:
        time.sleep(0.02)


def wait_caught_up(settings: Settings) -> None:
    """Until the sink has reached the topic's end (reads then answer without waiting, even
    on a machine loaded enough that catching up takes longer than read_wait_ms_max)."""
    deadline = time.monotonic() + CATCH_UP_WAIT_S
    while time.monotonic() < deadline:
        status, metrics = get(f"{settings.query_url}/metrics.json")
        if status == 200 and metrics["sink"].get("caught_up") and metrics["sink"]["lag_events"] == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"the sink did not catch up within {CATCH_UP_WAIT_S}s")


def test_the_sink_killed_while_writing_loses_doubles_and_reorders_nothing(settings: Settings, tmp_path: Path) -> None:
    settings = dataclasses.replace(settings, sink_batch_events=400)
    events = generate(20261125, accounts=60, events=24_000, partitions=settings.partitions)
    victim = next(event for event in reversed(events) if event.sequence > 3)
    aborted = [
        *generate(1, accounts=3, events=30, partitions=settings.partitions, prefix="aborted"),
        dataclasses.replace(victim, sequence=victim.sequence + 1, balance=10**12, amount=10**12),
    ]
    half = len(events) // 2
    produce_transactionally(settings, events[:half], abort=aborted, garbage=True)

    stack = Stack(settings, tmp_path)
    query = stack.query()
    rng = random.Random(7)
    second_half = threading.Thread(
        target=produce_transactionally, args=(settings, events[half:]), kwargs={"abort": [], "garbage": False}
    )
    written_at_kills = []
    try:
        for kill in range(KILLS):
            query.start()
            query.wait_ready()
            if kill == 1:
                second_half.start()
            wait_for_progress(settings)
            time.sleep(rng.uniform(0.0, 0.5))
            status, metrics = get(f"{settings.query_url}/metrics.json")
            query.kill()
            assert status == 200, metrics
            written_at_kills.append(sum(metrics["sink"]["positions"].values()))
        second_half.join()
        print("offsets written before each kill:", written_at_kills)
        assert any(0 < written < len(events) for written in written_at_kills), "no kill landed mid-stream"
        query.start()
        query.wait_ready()
        wait_caught_up(settings)
        check_views(settings, events)
        status, _ = get(f"{settings.query_url}/accounts/aborted-00000")
        assert status == 404, "an aborted transaction must never show"
        status, metrics = get(f"{settings.query_url}/metrics.json")
        assert metrics["sink"]["dead_letters"] <= 1
    finally:
        stack.stop_all()

    codec = Codec()
    letters = [
        codec.decode(message.value())
        for message in read_topic(settings.bootstrap_servers, f"{settings.topic_prefix}.deadletter")
    ]
    assert letters and all(isinstance(letter, DeadLetter) for letter in letters)
    assert {(letter.source_partition, letter.source_offset) for letter in letters} == {
        (letters[0].source_partition, letters[0].source_offset)
    }, "one undecodable message, dead-lettered (again, at most, after a kill)"

    # With the service stopped, reconciliation opens the store itself: it must agree too.
    result = subprocess.run(
        [sys.executable, "-m", "streamwallet.cli", "reconcile", "--via", "direct"],
        env={**os.environ, **settings.environment()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"events:   replay {len(events)}, view {len(events)}" in result.stdout
