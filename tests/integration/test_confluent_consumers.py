"""Our events read by consumers that are not ours. A ledger worker writing the Confluent
framing (STREAMWALLET_AVRO_FRAMING=confluent, a real Apicurio registry) takes commands in
both framings from one topic (a live migration), dead-letters hostile Confluent headers,
and writes events that confluent-kafka's own AvroDeserializer (with its
SchemaRegistryClient on Apicurio's Confluent API) and ClickHouse's AvroConfluent input
format (chDB, with format_avro_schema_registry_url) both read as we do."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from codec import Codec
from codec.confluent import confluent_header
from codec.deadletter import DeadLetter
from foundation.schema_registry import codec_for
from foundation.settings import Settings
from ledger import commands
from ledger.events import AccountEvent, CommandResult, ResultStatus
from streams.processor import LedgerProcessor
from tests.conftest import fresh_settings
from tests.principals import TESTER
from tests.support import read_decoded, read_topic, running_processor

pytestmark = [pytest.mark.kafka, pytest.mark.registry]

CHDB_QUERY = """
import sys, chdb
print(chdb.query(sys.argv[1], "JSONEachRow"))
"""


@pytest.fixture
def confluent_settings(kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path) -> Settings:
    return fresh_settings(kafka_bootstrap, tmp_path, avro_framing="confluent", schema_registry_url=schema_registry_url)


@pytest.fixture
def worker(confluent_settings: Settings) -> Iterator[LedgerProcessor]:
    """The ledger loop in this process, its codec made from the settings (Confluent framing)."""
    with running_processor(confluent_settings) as processor:
        yield processor


def until(reached: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not reached():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def plain(value: Any) -> Any:
    """A deserialized Avro value with times as epoch milliseconds, as our records have them."""
    if isinstance(value, datetime.datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def test_a_confluent_worker_takes_both_framings_and_outside_consumers_read_its_events(
    confluent_settings: Settings, worker: LedgerProcessor, schema_registry_url: str, tmp_path: Path
) -> None:
    settings = confluent_settings
    confluent = codec_for(settings)
    # A process not yet migrated: it writes single-object, and knows the registry to read.
    single_object = codec_for(Settings.from_environment({}, schema_registry_url=schema_registry_url))
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
    commands_topic = f"{settings.topic_prefix}.commands"
    # One topic, both framings: a producer not yet migrated and one that is.
    first: list[tuple[Codec, commands.Command]] = [
        (
            confluent,
            commands.OpenAccount(
                principal=TESTER,
                owner=TESTER.principal_id,
                command_id="c1",
                dedup_id="d1",
                account_id=alice,
                currency="USD",
            ),
        ),
        (
            single_object,
            commands.OpenAccount(
                principal=TESTER,
                owner=TESTER.principal_id,
                command_id="c2",
                dedup_id="d2",
                account_id=bob,
                currency="USD",
            ),
        ),
        (
            confluent,
            commands.Deposit(
                principal=TESTER, command_id="c3", dedup_id="d3", account_id=alice, amount=500, currency="USD"
            ),
        ),
        (
            single_object,
            commands.Transfer(
                principal=TESTER,
                command_id="c4",
                dedup_id="d4",
                from_account_id=alice,
                to_account_id=bob,
                amount=200,
                currency="USD",
            ),
        ),
    ]
    for codec, command in first:
        producer.produce(commands_topic, codec.encode(command), command.routing_key.encode())
    producer.flush(10)
    events_topic = f"{settings.topic_prefix}.events"

    def latest() -> dict[str, AccountEvent]:
        """Each account's newest event, decoded by a codec that has never seen the registry's
        ids (it asks the registry once per id)."""
        newest: dict[str, AccountEvent] = {}
        for event in read_decoded(settings.bootstrap_servers, events_topic, single_object):
            if event.account_id not in newest or event.sequence > newest[event.account_id].sequence:
                newest[event.account_id] = event
        return newest

    until(lambda: bob in latest() and latest()[bob].balance == 200)  # the transfer's credit reached bob
    withdraw = commands.Withdraw(
        principal=TESTER, command_id="c5", dedup_id="d5", account_id=bob, amount=50, currency="USD"
    )
    producer.produce(commands_topic, confluent.encode(withdraw), bob.encode())
    deposit_body = single_object.encode(first[2][1])[10:]
    producer.produce(commands_topic, confluent_header(1_999_999_999) + deposit_body, alice.encode())  # unknown id
    producer.produce(commands_topic, b"\x00\x00\x00", alice.encode())  # a Confluent header cut short
    producer.flush(10)

    def results() -> dict[str, CommandResult]:
        decoded = read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.results", single_object)
        return {result.command_id: result for result in decoded}

    deadletter_topic = f"{settings.topic_prefix}.deadletter"

    def letters() -> list[DeadLetter]:
        return read_decoded(settings.bootstrap_servers, deadletter_topic, confluent)

    # What the worker's transactions committed, not its counters (a commit can take seconds here).
    until(lambda: {"c1", "c2", "c3", "c4", "c5"} <= set(results()) and len(letters()) >= 2)
    until(lambda: latest()[bob].balance == 150 and latest()[alice].pending_out == 0)  # settled at the source
    accepted = {result.command_id for result in results().values() if result.status is ResultStatus.ACCEPTED}
    assert accepted >= {"c1", "c2", "c3", "c4", "c5"}
    assert sorted(letter.reason_code for letter in letters()) == ["UNDECODABLE", "UNKNOWN_SCHEMA"]
    assert latest()[alice].balance == 300

    values = [message.value() for message in read_topic(settings.bootstrap_servers, events_topic)]
    event_id = confluent.schema_id(AccountEvent)
    assert event_id is not None
    assert all(value[:5] == confluent_header(event_id) for value in values)  # the worker wrote Confluent
    ours: list[AccountEvent] = [single_object.decode(value) for value in values]
    assert {(event.account_id, event.kind.name) for event in ours} >= {
        (alice, "OPENED"),
        (alice, "DEPOSITED"),
        (alice, "TRANSFER_DEBITED"),
        (bob, "TRANSFER_CREDITED"),
        (bob, "WITHDRAWN"),
    }
    expected = [single_object.to_record(event) for event in ours]

    # confluent-kafka's deserializer, its registry client pointed at Apicurio's Confluent API.
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": schema_registry_url}))
    context = SerializationContext(events_topic, MessageField.VALUE)
    assert [plain(deserialize(value, context)) for value in values] == expected

    # ClickHouse's AvroConfluent format (chDB, in a process of its own), the raw values in a file.
    path = tmp_path / "events.avro-confluent"
    path.write_bytes(b"".join(values))
    query = (
        f"SELECT account_id, sequence, kind, amount, balance, currency, toUnixTimestamp64Milli(occurred_at_ms) AS at "
        f"FROM file('{path}', 'AvroConfluent', 'account_id String, sequence Int64, kind String, amount Int64, "
        f"balance Int64, currency String, occurred_at_ms DateTime64(3)') "
        f"SETTINGS format_avro_schema_registry_url = '{schema_registry_url}'"
    )
    answer = subprocess.run(
        [sys.executable, "-c", CHDB_QUERY, query], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    rows = [json.loads(line) for line in answer.splitlines() if line.strip()]
    assert [
        (row["account_id"], int(row["sequence"]), row["kind"], int(row["amount"]), int(row["balance"]), row["at"])
        for row in rows
    ] == [
        (event.account_id, event.sequence, event.kind.name, event.amount, event.balance, event.occurred_at_ms)
        for event in ours
    ]
    assert all(row["currency"] == "USD" for row in rows)
