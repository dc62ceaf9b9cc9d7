"""`streamwallet verify` against a real broker and a real worker: the events the ledger wrote
verify clean; a copy of the events topic verifies clean; a copy in which one event's amount
was altered (and re-encoded validly) is named by its account, sequence and offset."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from codec import Codec
from foundation.clients import kafka_config
from foundation.settings import Settings
from ledger import commands
from ledger.events import AccountEvent, CommandResult, EventKind
from tests.conftest import fresh_settings
from tests.principals import TESTER
from tests.support import read_decoded, read_topic, running_processor

pytestmark = pytest.mark.kafka

CLI_TIMEOUT_S = 120.0
RESULTS_TIMEOUT_S = 90.0


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamwallet.cli", *args],
        env={**os.environ, **settings.environment()},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def _workload(run: str) -> list[commands.Command]:
    payer, shop, fees = f"payer-{run}", f"shop-{run}", f"fees-{run}"
    sent: list[commands.Command] = []

    def ids(name: str) -> dict[str, Any]:
        return {
            "command_id": f"{name}-{run}-{len(sent)}",
            "dedup_id": f"{name}-{run}-{len(sent)}",
            "principal": TESTER,
        }

    for account in (payer, shop, fees):
        sent.append(commands.OpenAccount(**ids("open"), account_id=account, currency="USD", owner=TESTER.principal_id))
    sent.append(commands.Deposit(**ids("deposit"), account_id=payer, amount=10_000, currency="USD"))
    for amount in (100, 250, 75):
        sent.append(
            commands.Transfer(**ids("pay"), from_account_id=payer, to_account_id=shop, amount=amount, currency="USD")
        )
    legs = [(payer, -500), (shop, 500), (payer, -5), (fees, 5)]  # a payment and its fee
    sent.append(
        commands.Batch(
            **ids("batch"),
            batch_id=f"batch-{run}",
            legs=[commands.BatchLeg(account_id=account, amount=amount, currency="USD") for account, amount in legs],
        )
    )
    return sent


def _send_and_wait(settings: Settings, codec: Codec, sent: list[commands.Command]) -> None:
    producer = Producer({**kafka_config(settings), "partitioner": "murmur2_random", "enable.idempotence": True})
    topic = settings.topology().commands.name
    for command in sent:
        producer.produce(topic, key=command.routing_key.encode(), value=codec.encode(command))
        producer.flush(30)  # one at a time: each account's commands in order
    wanted = {command.command_id for command in sent}
    deadline = time.monotonic() + RESULTS_TIMEOUT_S
    while time.monotonic() < deadline:
        results = read_decoded(settings, settings.topology().results.name, codec)
        answered = {r.command_id: r for r in results if isinstance(r, CommandResult) and r.command_id in wanted}
        if set(answered) == wanted:
            refused = [(r.command_id, r.code, r.message) for r in answered.values() if r.code]
            assert not refused, refused
            return
        time.sleep(0.5)
    raise AssertionError("the worker did not answer every command in time")


def _copy(settings: Settings, source: str, *, alter: Any = None) -> tuple[str, dict[tuple[int, int], int]]:
    """A copy of `source` (same partitions, each message in order); `alter(event)` may return a
    changed event to write instead. Returns the copy's name and, per (partition, source offset),
    the copy's offset."""
    config = kafka_config(settings)
    admin = AdminClient(config)
    partitions = len(admin.list_topics(source, timeout=10).topics[source].partitions)
    name = f"{source}-copy-{uuid.uuid4().hex[:6]}"
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)
    codec = Codec()
    producer = Producer({**config, "enable.idempotence": True})
    offsets: dict[tuple[int, int], int] = {}

    def delivered(key: tuple[int, int]) -> Any:
        def report(error: Any, message: Any) -> None:
            assert error is None, error
            offsets[key] = message.offset()

        return report

    for message in read_topic(settings, source):
        value = message.value()
        if alter is not None:
            changed = alter(codec.decode(value, expected=(AccountEvent,)))
            if changed is not None:
                value = codec.encode(changed)
        key = (message.partition(), message.offset())
        producer.produce(
            name, key=message.key(), value=value, partition=message.partition(), on_delivery=delivered(key)
        )
    producer.flush(30)
    return name, offsets


def test_verify_names_the_one_altered_event_of_a_copy(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = fresh_settings(kafka_bootstrap, tmp_path)
    codec = Codec()
    run = uuid.uuid4().hex[:8]
    with running_processor(settings):
        _send_and_wait(settings, codec, _workload(run))

    events_topic = settings.topology().events.name
    done = _cli(settings, "verify")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "every account's chain holds" in done.stdout

    clean, _ = _copy(settings, events_topic)
    done = _cli(settings, "verify", "--topic", clean, "--json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    report = json.loads(done.stdout)
    assert report["ok"] and report["breaks"] == [] and report["unchained"] == 0
    assert report["accounts"] == 3 and report["events"] >= 12

    target: dict[str, Any] = {}

    def alter(event: AccountEvent) -> AccountEvent | None:
        if event.account_id == f"shop-{run}" and event.kind is EventKind.TRANSFER_CREDITED and not target:
            target.update(account_id=event.account_id, sequence=event.sequence)
            return dataclasses.replace(event, amount=event.amount + 1_000)  # hash left as it was
        return None

    altered, offsets = _copy(settings, events_topic, alter=alter)
    source_positions = [
        (message.partition(), message.offset())
        for message in read_topic(settings, events_topic)
        if (event := codec.decode(message.value())).account_id == target["account_id"]
        and event.sequence == target["sequence"]
    ]
    (position,) = source_positions
    done = _cli(settings, "verify", "--topic", altered, "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    (found,) = json.loads(done.stdout)["breaks"]
    assert (found["account_id"], found["sequence"], found["partition"], found["offset"]) == (
        target["account_id"],
        target["sequence"],
        position[0],
        offsets[position],
    )
    assert "altered" in found["reason"]
    text = _cli(settings, "verify", "--topic", altered)
    assert text.returncode == 1 and target["account_id"] in text.stdout and "altered" in text.stdout
